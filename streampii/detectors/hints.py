"""Boxes from the VLM (``Finding.boxes`` / ``Event.boxes``) as extra detections.

Qwen2-VL sees a few frames per second and may place boxes loosely, but it also names things
no detector here finds (ID documents, cards, screens): its boxes join the tracks like any
detector's, with detector name ``vlm``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from streampii.detectors import Detections
from streampii.tracks import HINT_DETECTOR


def hint_detections(hints: Iterable[Any], categories: Iterable[str] | None = None) -> list[tuple[float, Detections]]:
    """``(t, Detections)`` in time order from findings or events that carry boxes.

    ``categories`` limits which hints count (None: all that have boxes).
    """
    wanted = set(categories) if categories is not None else None
    by_time: dict[float, list] = defaultdict(list)
    for hint in hints:
        if wanted is not None and hint.category not in wanted:
            continue
        for timed in getattr(hint, "boxes", None) or ():
            x1, y1, x2, y2 = (float(v) for v in timed.box)
            if x2 > x1 and y2 > y1:
                by_time[float(timed.t)].append((hint.category, (x1, y1, x2, y2), hint.confidence, hint.value))
    result = []
    for t in sorted(by_time):
        items = by_time[t]
        result.append(
            (
                t,
                Detections(
                    np.array([b for _, b, _, _ in items], np.float32),
                    np.array([c if c is not None else 0.5 for _, _, c, _ in items], np.float32),
                    [c for c, _, _, _ in items],
                    [v for _, _, _, v in items],
                    HINT_DETECTOR,
                ),
            )
        )
    return result
