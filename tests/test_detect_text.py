"""PP-OCR (rapidocr) text and plate detection, with the plate heuristic."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from streampii.detectors.text import TextDetector, plate_like
from tests.redact_clip import plate_image


@pytest.fixture(scope="module")
def detector():
    return TextDetector(("plate", "text"))


@pytest.mark.parametrize(
    ("text", "box", "plate"),
    [
        ("AB-123-CD", (0, 0, 200, 40), True),
        ("7ABC123", (0, 0, 120, 30), True),
        ("M AB 1234", (0, 0, 160, 40), True),
        ("Musée du LOUVRE", (0, 0, 300, 40), False),
        ("AB-123-CD", (0, 0, 40, 200), False),
        ("HOTEL", (0, 0, 90, 30), False),
        (None, (0, 0, 100, 30), False),
    ],
)
def test_plate_heuristic(text, box, plate):
    assert plate_like(text, np.array(box, float)) is plate


def test_drawn_plate_is_a_license_plate_with_its_value(detector):
    scene = np.full((240, 400, 3), 90, np.uint8)
    plate = plate_image("KA-4521-B")
    scene[100 : 100 + plate.shape[0], 60 : 60 + plate.shape[1]] = plate
    found = detector.detect(scene)
    assert found.categories == ["license_plate"] and found.values == ["KA-4521-B"]
    x1, y1, x2, y2 = found.boxes[0]
    assert x1 <= 70 and y1 <= 110 and x2 >= 50 + plate.shape[1] and y2 >= 130  # the plate's characters


def test_without_recognition_a_plate_is_text_and_nothing_is_read(monkeypatch):
    """The gate only asks whether text is there: reading it would cost a recognition per line."""
    from streampii.detectors.text import TextOptions

    scene = np.full((240, 400, 3), 90, np.uint8)
    plate = plate_image("KA-4521-B")
    scene[100 : 100 + plate.shape[0], 60 : 60 + plate.shape[1]] = plate
    unread = TextDetector(("plate", "text"), TextOptions(recognize=False))
    monkeypatch.setattr(unread._ocr, "recognize_txt", lambda crops: pytest.fail("recognition ran"))
    found = unread.detect(scene)
    assert found.categories == ["text"] and found.values == [None]
    plates = TextDetector(("plate",), TextOptions(recognize=False))  # plates alone: reading is how one is told
    assert plates.detect(scene).values == ["KA-4521-B"]


def test_street_signs_are_text_with_values(detector, shared_data):
    image = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "easyocr_french.jpg")), cv2.COLOR_BGR2RGB)
    found = detector.detect(image)
    assert "license_plate" not in found.categories and len(found) >= 5
    assert any(v and "LOUVRE" in v for v in found.values)
    plates_only = TextDetector(("plate",)).detect(image)
    assert len(plates_only) == 0


def test_only_the_boxes_read_are_cut_out(detector, shared_data, monkeypatch):
    """rapidocr would cut every detected box out of the picture; only those read are."""
    from rapidocr.utils import process_img

    cut = []
    original = process_img.get_rotate_crop_image

    def counted(img, points):
        cut.append(1)
        return original(img, points)

    monkeypatch.setattr(process_img, "get_rotate_crop_image", counted)
    image = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "easyocr_french.jpg")), cv2.COLOR_BGR2RGB)
    found = detector.detect(image)
    assert len(cut) == len(found) >= 5 and any(v and "LOUVRE" in v for v in found.values)
    cut.clear()
    assert len(TextDetector(("plate",)).detect(image)) == 0
    assert len(cut) < len(found)  # plates only: boxes not shaped like a plate are dropped unread


def test_detection_input_is_rapidocrs_own_in_float32(detector, shared_data):
    """The float32 preprocessing of an RGB picture gives the network what rapidocr's float64 one
    gives for its BGR copy, within float32 rounding, as one C-contiguous 1x3xHxW array, at every
    size limit, with PP-OCR's mean and std or ImageNet's (one for each channel)."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    from streampii.detectors.text import float32_input

    det = detector._ocr._load_det_model()
    image = cv2.imread(str(shared_data / "images" / "easyocr_french.jpg"))
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    norms = ((det.mean, det.std), ([0.406, 0.456, 0.485], [0.225, 0.224, 0.229]))  # BGR order, as rapidocr's
    for (limit_type, side), (mean, std) in itertools.product((("min", 736), ("max", 960), ("max", 320)), norms):
        prep = DetPreProcess(side, limit_type, mean, std)
        theirs = prep(image)
        ours = float32_input(prep)(rgb)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-5


def test_onnxruntime_sessions_do_not_spin(detector):
    """Idle onnxruntime workers that spin for work after every run cost CPU that no stage sees."""
    detector.detect(np.full((64, 64, 3), 90, np.uint8))
    for model in (detector._ocr._load_det_model(), detector._ocr._load_rec_model()):
        options = model.session.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_skipping_the_corners_of_specks_keeps_rapidocrs_boxes(detector, shared_data):
    """``quick_mini_boxes`` drops what rapidocr's DB post-processing would drop, no more: the same
    boxes with and without it, on a sign and on a textured, noisy scene full of specks."""
    det = detector._ocr._load_det_model()
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.uniform(50, 200, (12, 20, 3)).astype(np.float32), (1280, 720))
    noisy = np.clip(texture + rng.normal(0, 8, texture.shape), 0, 255).astype(np.uint8)
    sign = cv2.imread(str(shared_data / "images" / "easyocr_french.jpg"))
    quick = det.postprocess_op.get_mini_boxes
    for image in (sign, noisy):
        ours = det(image)
        det.postprocess_op.get_mini_boxes = type(det.postprocess_op).get_mini_boxes.__get__(det.postprocess_op)
        try:
            theirs = det(image)
        finally:
            det.postprocess_op.get_mini_boxes = quick
        assert (ours.boxes is None) == (theirs.boxes is None)
        if theirs.boxes is not None:
            np.testing.assert_array_equal(ours.boxes, theirs.boxes)
            assert ours.scores == theirs.scores


def _covered(box: np.ndarray, boxes: np.ndarray) -> float:
    """The largest fraction of ``box``'s area that one of ``boxes`` covers."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    return float((ix * iy).max() / ((box[2] - box[0]) * (box[3] - box[1]))) if len(boxes) else 0.0


def test_a_crop_is_read_at_the_frames_scale_and_finds_the_frames_lines(detector, shared_data):
    """The redactor reads changed regions alone: a crop around each line the whole picture reads,
    with 64 px of context and the frame's size given, finds a box over that line and reads the
    same words; its detection input is the crop at the frame's scale, also where rapidocr shrinks
    a large frame before detecting; and its lines may be as tall as the frame allows, not the crop."""
    image = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "easyocr_french.jpg")), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    whole = detector.detect(image)
    lines = [(box, value) for box, value in zip(whole.boxes, whole.values, strict=True) if value and len(value) >= 7]
    assert len(lines) >= 5
    for box, value in lines:
        x0, y0 = max(0, int(box[0]) - 64), max(0, int(box[1]) - 64)
        x1, y1 = min(width, int(box[2]) + 64), min(height, int(box[3]) + 64)
        planes = [np.ascontiguousarray(plane[y0:y1, x0:x1]) for plane in cv2.split(image)]
        found = detector.detect_planes(planes, frame_size=(width, height))
        found.boxes += np.array([x0, y0, x0, y0], np.float32)
        assert _covered(box, found.boxes) >= 0.9, (value, found.boxes, box)
        assert value in found.values, (value, found.values)

    tall = next(box for box, value in lines if value == "Musée du LOUVRE")  # about 54 px of a 1024-px frame
    crop = np.ascontiguousarray(image[int(tall[1]) - 20 : int(tall[3]) + 20, int(tall[0]) - 20 : int(tall[2]) + 20])
    assert "Musée du LOUVRE" in detector.detect(crop, frame_size=(width, height)).values
    assert "Musée du LOUVRE" not in detector.detect(crop).values  # alone, the line is too tall for the crop

    det, shapes = detector._det, []
    run = det.session

    def record(blob):
        shapes.append(blob.shape[2:])
        return run(blob)

    det.session = record
    try:
        for k in (1, 4):  # 4x: 4096 px, which rapidocr shrinks to 2000 before it detects
            frame = cv2.resize(image, (width * k, height * k)) if k > 1 else image
            detector.detect(frame)
            cut = np.ascontiguousarray(frame[300 * k : 500 * k, 100 * k : 500 * k])
            detector.detect(cut, frame_size=(width * k, height * k))
    finally:
        det.session = run
    scale = 960 / 1024  # the frame: its shorter side to 736 would make the longer exceed 960
    for (frame_h, frame_w), (crop_h, crop_w) in (shapes[0:2], shapes[2:4]):
        assert (frame_h, frame_w) == (960, 640)
        assert (crop_h, crop_w) == (round(200 * scale / 32) * 32, round(400 * scale / 32) * 32)
