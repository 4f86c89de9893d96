"""Events: findings of overlapping windows merged into one timestamped record each.

A finding joins an open event of the same category when it shows the same thing (same
legible value, or an overlapping box; failing that, nothing that contradicts it) and starts
no later than ``gap`` seconds after the event ends. Times are the findings' own, which the
analyzers take from frame presentation timestamps. An event is final, and written, once no later window can extend it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streampii.analyzers import Finding, TimedBox

# A camera's event is logged at least this often (seconds of its span), and goes on as a new one: a
# face, plate or sign in view for days would otherwise be held, and rewritten into the resume state
# after every window, until it left (one face an hour: 36,000 track keyframes, 11.6 MiB, 0.24 CPU s
# a window to write; a VLM event: 3,600 boxes an hour), and not logged before.
LIVE_EVENT_SPAN = 600.0


@dataclass
class Event:
    category: str
    start: float
    end: float
    source: str
    value: str | None = None
    confidence: float | None = None
    detector: str | None = None
    description: str | None = None
    label: str | None = None
    boxes: list[TimedBox] = field(default_factory=list)
    wall_start: float | None = None  # live sources: UNIX time of start and end
    wall_end: float | None = None
    extra: dict = field(default_factory=dict)  # e.g. segment name

    def to_dict(self) -> dict:
        record: dict = {
            "category": self.category,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "source": self.source,
        }
        for key in ("value", "confidence", "detector", "description", "label"):
            value = getattr(self, key)
            if value is not None:
                record[key] = round(value, 3) if isinstance(value, float) else value
        if self.boxes:
            record["boxes"] = [b.to_dict() for b in self.boxes]
        if self.wall_start is not None:
            record["wall_start"] = wall_iso(self.wall_start)
            record["wall_end"] = wall_iso(self.wall_end if self.wall_end is not None else self.wall_start)
        record.update(self.extra)
        return record


def wall_iso(unix: float) -> str:
    """UNIX time as UTC ISO 8601 with milliseconds, e.g. 2026-11-25T10:15:00.000Z."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _match(event: Event, finding: Finding) -> int:
    """How surely ``finding`` shows the thing of ``event``: 2 same value or overlapping box,
    1 nothing contradicts it (one side has a value, the other none, and no boxes to compare),
    0 something else."""
    if event.label and finding.label and event.label.lower() != finding.label.lower():
        return 0  # two different kinds of "other"
    if event.value and finding.value:
        return 2 if _norm(event.value) == _norm(finding.value) else 0
    if event.boxes and finding.boxes:
        return 2 if any(_iou(a.box, b.box) > 0.1 for a in event.boxes[-4:] for b in finding.boxes[:4]) else 0
    if not (event.value or finding.value):
        return 2  # neither names what it saw and no boxes tell them apart: one event per category
    return 1  # e.g. a plate read in one window and unreadable in the next


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class EventMerger:
    """Merges findings window by window; deterministic for the same findings in the same order."""

    def __init__(self, source: str, gap: float, extra: dict | None = None, max_span: float | None = None) -> None:
        self.source = source
        self.gap = gap
        self.max_span = max_span  # an event this long is final (a camera's: LIVE_EVENT_SPAN); None: no limit
        self.extra = extra or {}
        self._open: list[Event] = []

    def add(self, findings: Iterable[Finding], now: float, wall_clock=None) -> list[Event]:
        """Take one window's findings; return the events that became final before ``now``
        (the start time of the window just analysed: nothing earlier can be extended)."""
        for finding in sorted(findings, key=lambda f: (f.start, f.category, f.value or "")):
            match = self._best_match(finding)
            if match is None:
                self._open.append(self._new_event(finding, wall_clock))
            else:
                self._extend(match, finding, wall_clock)
        final = [e for e in self._open if self._final(e, now)]
        self._open = [e for e in self._open if not self._final(e, now)]
        return sorted(final, key=lambda e: (e.start, e.category))

    def _final(self, event: Event, now: float) -> bool:
        return event.end + self.gap < now or (self.max_span is not None and event.end - event.start >= self.max_span)

    def _best_match(self, finding: Finding) -> Event | None:
        """The open event this finding continues: the surest match, then the nearest in time,
        then the earliest opened."""
        best, best_rank = None, (0, 0.0)
        for event in self._open:
            if event.category != finding.category or finding.start - event.end > self.gap:
                continue
            distance = max(0.0, finding.start - event.end, event.start - finding.end)
            rank = (_match(event, finding), -distance)
            if rank[0] and (best is None or rank > best_rank):
                best, best_rank = event, rank
        return best

    def close(self) -> list[Event]:
        final, self._open = sorted(self._open, key=lambda e: (e.start, e.category)), []
        return final

    def _new_event(self, f: Finding, wall_clock) -> Event:
        event = Event(
            category=f.category,
            start=f.start,
            end=f.end,
            source=self.source,
            value=f.value,
            confidence=f.confidence,
            detector=f.detector or None,
            description=f.description,
            label=f.label,
            boxes=list(f.boxes),
            extra=dict(self.extra),
        )
        if wall_clock is not None:
            event.wall_start, event.wall_end = wall_clock(f.start), wall_clock(f.end)
        return event

    def _extend(self, e: Event, f: Finding, wall_clock) -> None:
        e.start, e.end = min(e.start, f.start), max(e.end, f.end)
        if f.confidence is not None:
            e.confidence = max(e.confidence or 0.0, f.confidence)
        e.value = e.value or f.value
        e.description = e.description or f.description
        seen = {b.t for b in e.boxes}
        e.boxes = sorted(e.boxes + [b for b in f.boxes if b.t not in seen], key=lambda b: b.t)
        if wall_clock is not None:
            e.wall_start, e.wall_end = wall_clock(e.start), wall_clock(e.end)
