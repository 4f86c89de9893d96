"""Analyzers look at windows and return findings: what PII they saw, when, and where.

Every analyzer has the same small interface, so the pipeline neither knows nor cares
whether a finding came from Qwen2-VL or from a detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streampii.windows import Window

CATEGORIES = (
    "face",
    "license_plate",
    "person_name",
    "id_document",
    "payment_card",
    "screen_content",
    "contact_info",
    "address",
    "text",
    "other",
)


@dataclass(frozen=True)
class TimedBox:
    """A box at a moment: ``[x1, y1, x2, y2]`` in original-frame pixels."""

    t: float
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict:
        return {"t": round(self.t, 3), "box": [round(v, 1) for v in self.box]}


@dataclass
class Finding:
    """One thing an analyzer saw in one window; times are absolute seconds from frame PTS."""

    category: str
    start: float
    end: float
    value: str | None = None  # legible text, e.g. a plate number
    confidence: float | None = None
    description: str | None = None
    label: str | None = None  # the analyzer's own label when category is "other"
    boxes: list[TimedBox] = field(default_factory=list)
    detector: str = ""


@dataclass
class WindowResult:
    """An analyzer's answer for one window."""

    window: Window
    findings: list[Finding]
    analyzer: str
    visual_tokens: int | None = None
    error: str | None = None  # set when the answer could not be used; the window counts as failed
    seconds: float = 0.0
    raw: str | None = None  # the model's answer as text, kept for the debug file when error is set
    # no answer at all: the model call failed (out of memory, a CUDA error), unlike an answer that
    # could not be used; the input's run then reports an error (a gap in the analysis to alert on)
    unanswered: bool = False
    # never sent to the model: the run was aborted first (a second Ctrl-C with --jobs). The window is
    # not done: the pipeline stops before it, and a resumed run analyses it
    interrupted: bool = False


class Analyzer(Protocol):
    name: str

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        """One result per window, in order; may batch the windows into one model call."""
        ...

    def describe(self) -> dict:
        """Facts for the manifest (model, device, settings)."""
        ...
