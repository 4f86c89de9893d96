"""Text and license plates: PP-OCR detection and recognition from the ``rapidocr`` wheel.

There is no permissively licensed plate detector on PyPI, but a plate is text: every text
line PP-OCR finds is a box, and a box whose shape and recognized characters look like a plate
(short, plate-like aspect ratio, letters and digits with at least one digit) is a
``license_plate``; the rest is ``text``. Boxes whose text cannot be read are kept (as ``text``):
blurring must not depend on recognition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from streampii.detectors import Detections

_PLATE_CHARS = re.compile(r"^[A-Z0-9][A-Z0-9 \-·.:]*[A-Z0-9]$")


@dataclass(frozen=True)
class TextOptions:
    box_threshold: float = 0.5  # PP-OCR detection box score
    text_score: float = 0.5  # recognition score below which a box keeps no value
    side_len: int = 736  # PP-OCR upscales the shorter side to this (rapidocr's default)...
    max_side: int | None = 960  # ...but its detection input's longer side stays at most this (None: no limit)
    recognize: bool = True  # read the text (values, plate test); off: every box is "text" (plates alone: read)
    plate_aspect: tuple[float, float] = (1.3, 8.0)  # width / height of a plate's box
    max_line_height: float = 0.2  # a text line is at most this fraction of the frame's shorter side
    threads: int = 0


def detection_size(height: int, width: int, side_len: int, max_side: int | None) -> tuple[str, int]:
    """rapidocr's (limit_type, limit_side_len) for a picture: the shorter side upscaled to ``side_len``
    unless that makes the longer side exceed ``max_side``, then the longer side set to ``max_side``.

    PP-OCR detection costs about its input's pixel count, and rapidocr's default alone keeps a
    1920x1080 frame whole and upscales a 640x360 one to 1308x736 (4 times the pixels). Smaller is
    also better for plates: PP-OCR's detector misses small text in large inputs. Generated plates
    (scripts/bench_redact.py) 16-24 px tall in 1920x1080 frames: 14/18 found at 960 px, 17/18 at
    1280 (1.5 times the cost), 2/18 at full size. Recognition reads crops of the full-size
    picture whatever the detection size.
    """
    if max_side and max(height, width) * max(1.0, side_len / max(min(height, width), 1)) > max_side:
        return "max", max_side
    return "min", side_len


def detection_scale(height: int, width: int, side_len: int, max_side: int | None) -> float:
    """The scale of PP-OCR's detection input against a picture of this size (rapidocr's resize with
    ``detection_size``'s limits, before it rounds the sides to multiples of 32)."""
    limit_type, limit = detection_size(height, width, side_len, max_side)
    if limit_type == "max":
        return min(1.0, limit / max(height, width, 1))
    return max(1.0, limit / max(min(height, width), 1))


def plate_like(text: str | None, box: np.ndarray | tuple, aspect: tuple[float, float] = (1.3, 8.0)) -> bool:
    """Does recognized ``text`` in ``box`` look like a license plate?

    4-10 letters/digits with at least two digits, no lower-case letters (signs and names have
    them), plate separators only (space, dash, dot), and a box wider than tall within ``aspect``.
    """
    text = (text or "").strip()
    if not _PLATE_CHARS.match(text):  # also rejects lower case
        return False
    alnum = [c for c in text if c.isalnum()]
    digits = sum(c.isdigit() for c in alnum)
    ratio = (box[2] - box[0]) / max(box[3] - box[1], 1e-6)
    return bool(4 <= len(alnum) <= 10 and digits >= 2 and aspect[0] <= ratio <= aspect[1])


def float32_input(prep: Any) -> Callable[[np.ndarray], np.ndarray | None]:
    """rapidocr's detection preprocessing ``prep`` (resize, normalise, to 1x3xHxW) for an RGB
    picture, worked in float32: its own takes BGR and normalises with float64 mean and std, so the
    whole resized picture is worked in float64 and cast back (a 720p frame: 13 against 28 ms a
    detection outside the network). Each channel is cast from its own plane, in BGR order, so the
    frame needs no BGR copy and the cast no transposing gather (0.67 against 0.99 ms at 960x544)."""
    std = np.asarray(prep.std, np.float64)
    scale = (prep.scale / std).astype(np.float32)
    offset = (np.asarray(prep.mean, np.float64) / std).astype(np.float32)

    def run(img: np.ndarray) -> np.ndarray | None:
        resized = prep.resize(img)
        if resized is None:
            return None
        blob = np.empty((1, 3, *resized.shape[:2]), np.float32)
        planes = cv2.split(resized)[::-1]  # R, G, B -> the B, G, R that PP-OCR was trained on
        for channel, plane, s, o in zip(blob[0], planes, scale, offset, strict=True):
            np.copyto(channel, plane)
            channel *= s
            channel -= o
        return blob

    return run


def quick_mini_boxes(post: Any) -> Callable[[np.ndarray], tuple[np.ndarray | None, float]]:
    """PP-OCR's DB postprocessing ``post``'s ``get_mini_boxes``, skipping the work for a region
    it drops.

    ``boxes_from_bitmap`` asks for every region's corner points and its shorter side, and drops
    a region whose shorter side is under ``min_size`` without looking at the points (and the same
    for the grown box, under ``min_size`` + 2). Most regions of a textured scene are specks
    (35 of 37 a frame on the benchmark's clip): their shorter side alone, from one
    ``minAreaRect``, spares the sorting of their corners in Python (0.9 ms a detection).
    """
    full = post.get_mini_boxes

    def mini_boxes(contour: np.ndarray) -> tuple[np.ndarray | None, float]:
        side = min(cv2.minAreaRect(contour)[1])
        if side < post.min_size:
            return None, side  # dropped by the caller, whatever the points
        return full(contour)

    return mini_boxes


def _sessions_without_spinning() -> None:
    """rapidocr's onnxruntime sessions made with intra-op spinning off, as CenterFace's.

    Detection alternates with decoding, masking and encoding; with spinning on, onnxruntime's
    idle workers spin for work after every run, on threads no stage timer sees: a 720p detection
    with 20 ms of other work after it took 751-777 ms of process CPU against 512-517. rapidocr
    3.10 offers no setting for it, so its session options are extended, once, for every session
    built after.
    """
    from rapidocr.inference_engine.onnxruntime.main import OrtInferSession

    make = OrtInferSession._init_sess_opts
    if getattr(make, "without_spinning", False):
        return

    def options(cfg: Any) -> Any:
        so = make(cfg)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    options.without_spinning = True  # type: ignore[attr-defined]
    OrtInferSession._init_sess_opts = staticmethod(options)


class LazyCrops(Sequence):
    """rapidocr's crops of detected boxes (``get_rotate_crop_image``), each cut when first read,
    from the RGB picture and handed on as BGR.

    rapidocr cuts every box out of the full-size picture with a bicubic perspective warp before
    anything looks at it, also the boxes ``TextDetector`` drops unread (too tall for a line of
    text: textured walls, whole cars), which are the large ones. On the benchmark's clip
    (scripts/bench_e2e.py) that was half of a detection's work outside the network: 24.5 ms,
    12 ms with only the boxes read cut out.
    """

    def __init__(self, img: np.ndarray, boxes: np.ndarray) -> None:
        self.img, self.boxes = img, boxes

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        from rapidocr.utils import process_img

        crop = process_img.get_rotate_crop_image(self.img, np.array(self.boxes[i], copy=True))
        return cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)  # the picture is RGB; the recognizer takes BGR


class TextDetector:
    name = "ppocr"
    # A crop of a frame may be read alone (the redactor's changed regions): given the frame's size,
    # it is detected at the frame's scale and its lines are measured against the frame's height.
    takes_crops = True

    def __init__(self, kinds: tuple[str, ...] = ("plate", "text"), options: TextOptions | None = None) -> None:
        from rapidocr import RapidOCR  # heavy import (omegaconf, models): only when text is asked for

        self.kinds = tuple(k for k in kinds if k in ("plate", "text")) or ("plate", "text")
        self.options = options or TextOptions()
        params = {
            "Global.use_cls": False,  # upside-down text is rare in footage; saves a model call per box
            "Global.log_level": "error",
            "Det.box_thresh": self.options.box_threshold,
            "Det.limit_side_len": self.options.side_len,
        }
        if self.options.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.options.threads
        _sessions_without_spinning()
        self._ocr = RapidOCR(params=params)
        self._ocr.use_rec = False  # detect() recognizes only the boxes it keeps
        self._ocr.crop_text_regions = LazyCrops  # ...and cuts out only those
        self._det = det = self._ocr._load_det_model()  # reads its size limits on every call
        # rapidocr builds its preprocessing anew on every detection, with the size limits of the
        # moment: np.array() of omegaconf's lists took 0.5 ms of it, of plain lists 5 us
        det.mean, det.std = list(det.mean), list(det.std)
        make = det.get_preprocess
        det.get_preprocess = lambda: float32_input(make())
        det.postprocess_op.get_mini_boxes = quick_mini_boxes(det.postprocess_op)

    def _size_detection(self, height: int, width: int) -> None:
        det = self._det
        det.limit_type, det.limit_side_len = detection_size(height, width, self.options.side_len, self.options.max_side)

    def _size_crop(self, img: np.ndarray, crop: tuple[int, int], frame_size: tuple[int, int]) -> None:
        """Limits that read ``img`` (a ``crop`` (height, width) of a ``frame_size`` (width, height)
        frame, as rapidocr's preprocessing left it) at the scale the whole frame is read at."""
        width, height = frame_size
        bounded = min(1.0, self._ocr.max_side_len / max(width, height))  # rapidocr shrinks huge pictures first
        scale = bounded * detection_scale(
            round(height * bounded), round(width * bounded), self.options.side_len, self.options.max_side
        )
        h, w = img.shape[:2]
        ratio = scale * crop[0] / h  # against img, which preprocessing may have scaled too
        det = self._det
        # rapidocr's "max" limit only shrinks and its "min" only enlarges: each gives `ratio` exactly
        det.limit_type, det.limit_side_len = ("max", ratio * max(h, w)) if ratio <= 1 else ("min", ratio * min(h, w))

    def detect_planes(self, planes: Sequence[np.ndarray], frame_size: tuple[int, int] | None = None) -> Detections:
        """``detect`` of a picture given as three uint8 HxW planes R, G and B (the redactor's form,
        in which it cuts crops of changed regions; merging them costs 0.15 ms at 720p)."""
        return self.detect(cv2.merge(list(planes)), frame_size)

    def detect(self, image_rgb: np.ndarray, frame_size: tuple[int, int] | None = None) -> Detections:
        """Text and plates in a uint8 HxWx3 RGB picture. ``frame_size`` (width, height): the picture
        is a crop of a frame that size, read at the frame's scale (PP-OCR's input size follows the
        picture's) and with lines as tall as the frame allows (``max_line_height``)."""
        from rapidocr.main import RapidOCRError
        from rapidocr.utils.process_img import map_boxes_to_original

        # rapidocr takes OpenCV's BGR: the picture stays RGB, and the detection input and the crops
        # that are read swap the channels (float32_input, LazyCrops) instead of a copy of the frame
        img, record = self._ocr.preprocess_img(image_rgb)
        if frame_size is None:
            self._size_detection(*img.shape[:2])
        else:
            self._size_crop(img, image_rgb.shape[:2], frame_size)
        det, _, _, crops = self._ocr.run_ocr_steps(img, record)  # boxes only: recognition below
        if det.boxes is None or len(det.boxes) == 0:
            return Detections(detector=self.name)
        quads = map_boxes_to_original(np.asarray(det.boxes, np.float32), record, *image_rgb.shape[:2])
        boxes = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
        # PP-OCR sometimes outlines a whole car or sign as one "line": a line's height (the quad's
        # shorter side) is small next to the frame
        sides = np.linalg.norm(quads - np.roll(quads, -1, axis=1), axis=2)
        line_height = np.minimum(sides[:, 0] + sides[:, 2], sides[:, 1] + sides[:, 3]) / 2
        shorter = min(frame_size) if frame_size else min(image_rgb.shape[:2])
        keep = line_height <= self.options.max_line_height * shorter
        if "text" not in self.kinds:  # only plates are kept: read only the boxes shaped like one
            aspect = (boxes[:, 2] - boxes[:, 0]) / np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
            keep &= (aspect >= self.options.plate_aspect[0]) & (aspect <= self.options.plate_aspect[1])
        values: list[str | None] = [None] * len(boxes)
        # unread boxes are "text"; only a detector of plates alone must read to keep anything
        read = np.flatnonzero(keep) if self.options.recognize or "text" not in self.kinds else []
        if len(read):
            try:
                rec = self._ocr.recognize_txt([crops[i] for i in read])
            except RapidOCRError:
                rec = None
            if rec is not None and rec.txts is not None and len(rec.txts) == len(read):
                for i, text, score in zip(read, rec.txts, rec.scores, strict=True):
                    values[i] = text.strip() if text and score >= self.options.text_score else None
        categories = [
            "license_plate" if plate_like(v, b, self.options.plate_aspect) else "text"
            for v, b in zip(values, boxes, strict=True)
        ]
        found = Detections(boxes, np.asarray(det.scores, np.float32), categories, values, self.name)
        if "text" not in self.kinds:
            keep &= np.array([c == "license_plate" for c in categories], bool)
        return found[keep]
