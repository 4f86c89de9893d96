"""Changed regions: the parts of a frame that differ from the picture a detector last saw.

When a person crosses an otherwise still scene, the detector need not look at the whole frame
again: boxes in the parts that did not change still hold (the redactor already reuses them when
*nothing* changed), and the parts that did change are looked at alone. CenterFace is fully
convolutional, so a face in a crop with some context around it scores as in the full frame; a
400x280 crop of a 720p frame costs a ninth of a full run.

Everything is decided on the redactor's thumbnails (grey, each pixel the mean of a block of the
frame), compared with the same threshold as its still-picture test. PP-OCR reads a crop at the
frame's scale (its input size otherwise follows the picture's), so its lines are found as in
the frame (``TextDetector.detect``'s ``frame_size``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1 and y1 excluded
_ALIGN = 32  # CenterFace's input sides are multiples of this: crops the same size share a shape


def changed_regions(
    reference: np.ndarray,
    thumb: np.ndarray,
    threshold: int,
    size: tuple[int, int],
    boxes: np.ndarray,
    pad: int = 64,
    max_fraction: float = 0.5,
) -> list[Rect] | None:
    """Rectangles of a ``size`` (width, height) frame that hold every block whose mean moved by more
    than ``threshold`` between ``reference`` and ``thumb``, each with ``pad`` pixels of context, and
    every one of ``boxes`` (the detector's last boxes) they touch, whole: a box is then either
    inside a rectangle (looked for again) or clear of all of them (its pixels did not change).

    [] when nothing changed; None when the rectangles would cover more than ``max_fraction`` of
    the frame (the whole frame costs little more then), or the thumbnails differ in size.
    """
    if reference.shape != thumb.shape or max_fraction <= 0:
        return None
    changed = cv2.absdiff(reference, thumb) > threshold
    if not changed.any():
        return []
    width, height = size
    scale_x, scale_y = width / thumb.shape[1], height / thumb.shape[0]
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed.view(np.uint8), connectivity=8)
    rects = [
        _grown(
            (
                int(x * scale_x) - pad,
                int(y * scale_y) - pad,
                int(np.ceil((x + w) * scale_x)) + pad,
                int(np.ceil((y + h) * scale_y)) + pad,
            ),
            size,
        )
        for x, y, w, h, _ in stats[1:count]
    ]
    held = [
        (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
        for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4)
    ]
    while True:  # grow until no box straddles a rectangle and no two rectangles overlap
        if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) > max_fraction * width * height:
            return None
        merged = _merge(rects, held, size)
        if merged == rects:
            return rects
        rects = merged


def inside(boxes: np.ndarray, rects: Sequence[Rect]) -> np.ndarray:
    """Which of ``boxes`` (Nx4) lie within one of ``rects``."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    within = np.zeros(len(boxes), bool)
    for x0, y0, x1, y1 in rects:
        within |= (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
    return within


def refresh(reference: np.ndarray, thumb: np.ndarray, rects: Sequence[Rect], size: tuple[int, int]) -> np.ndarray:
    """``reference`` with the blocks that lie within ``rects`` taken from ``thumb``: what the
    detector has now seen there. Blocks outside keep the picture of their own last look, so a
    change that creeps in frame by frame still adds up to one that counts."""
    updated = reference.copy()
    scale_x, scale_y = size[0] / thumb.shape[1], size[1] / thumb.shape[0]
    for x0, y0, x1, y1 in rects:
        tx0, ty0 = int(np.ceil(x0 / scale_x)), int(np.ceil(y0 / scale_y))
        tx1, ty1 = int(x1 / scale_x), int(y1 / scale_y)
        updated[ty0:ty1, tx0:tx1] = thumb[ty0:ty1, tx0:tx1]
    return updated


def _grown(rect: Rect, size: tuple[int, int]) -> Rect:
    """``rect`` within the frame, its sides grown to multiples of ``_ALIGN`` where the frame allows."""
    width, height = size
    x0, y0, x1, y1 = max(0, rect[0]), max(0, rect[1]), min(width, rect[2]), min(height, rect[3])
    x0, x1 = _aligned(x0, x1, width)
    y0, y1 = _aligned(y0, y1, height)
    return x0, y0, x1, y1


def _aligned(start: int, end: int, limit: int) -> tuple[int, int]:
    length = min(limit, -(-(end - start) // _ALIGN) * _ALIGN)
    end = min(limit, start + length)
    return end - length, end


def _merge(rects: list[Rect], boxes: list[Rect], size: tuple[int, int]) -> list[Rect]:
    """One pass: each rectangle takes in the boxes it touches; overlapping rectangles become one."""
    grown = []
    for rect in rects:
        for box in boxes:
            if _touch(rect, box):
                rect = _grown(_union(rect, box), size)
        grown.append(rect)
    out: list[Rect] = []
    for rect in grown:
        for k, other in enumerate(out):
            if _touch(rect, other):
                out[k] = _grown(_union(rect, other), size)
                break
        else:
            out.append(rect)
    return out


def _touch(a: Rect, b: Rect | tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Rect, b: Rect | tuple[int, ...]) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
