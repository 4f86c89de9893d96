"""Localizers: where PII is in a frame. Every detector returns one ``Detections`` type.

Like supervision's ``Detections``: parallel arrays, boxes ``[x1, y1, x2, y2]`` in pixels of the
upright original frame, so tracks, events and masks never need to know which model found a box.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

DETECT_KINDS = ("face", "plate", "text")  # what --detect accepts


@dataclass
class Detections:
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # Nx4 x1, y1, x2, y2
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    categories: list[str] = field(default_factory=list)  # one of analyzers.CATEGORIES per box
    values: list[str | None] = field(default_factory=list)  # recognized text, or None
    detector: str = ""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if not self.values:
            self.values = [None] * len(self.boxes)
        if not (len(self.boxes) == len(self.scores) == len(self.categories) == len(self.values)):
            raise ValueError("Detections: boxes, scores, categories and values differ in length")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, keep) -> Detections:
        """Select boxes with a boolean mask or index array, as supervision does."""
        index = np.arange(len(self))[keep]
        return Detections(
            self.boxes[index],
            self.scores[index],
            [self.categories[i] for i in index],
            [self.values[i] for i in index],
            self.detector,
        )

    @classmethod
    def merge(cls, parts: Iterable[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            [c for p in parts for c in p.categories],
            [v for p in parts for v in p.values],
            "+".join(dict.fromkeys(p.detector for p in parts)),
        )


class Detector(Protocol):
    name: str
    kinds: tuple[str, ...]  # which of DETECT_KINDS it serves

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Boxes in ``image_rgb``'s own pixels (uint8 HxWx3 RGB, upright)."""
        ...

    # A detector may also offer ``detect_planes(planes, frame_size=None)``, the same picture as
    # three uint8 HxW planes R, G, B: the redactor then hands it planes (cheaper to convert to, and
    # to cast from for a model that takes planes). One whose ``takes_crops`` is true is handed crops
    # of the planes where only part of the picture changed (``streampii.regions``), with the
    # frame's (width, height) as ``frame_size``, so that it reads them as it reads the frame.


def parse_detect(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"face,plate"`` -> ``("face", "plate")``; raises ``ValueError`` naming an unknown kind."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in items if k.strip()))
    unknown = [k for k in kinds if k not in DETECT_KINDS]
    if unknown:
        raise ValueError(f"--detect: unknown kind {', '.join(unknown)} (choose from {', '.join(DETECT_KINDS)})")
    return kinds
