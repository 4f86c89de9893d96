"""Tracks: detections linked across frames, so that one face or plate is one event and one mask.

Detection runs on some frames only; a track knows where its object was at those keyframes and
answers ``box_at(t)`` for any frame: linear interpolation between keyframes, and a held box
(stretched along the track's last motion) for ``margin`` seconds before the first and after
the last keyframe. Linking is greedy by overlap, in a fixed order: the same detections always
give the same tracks.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from streampii.analyzers import TimedBox
from streampii.detectors import Detections
from streampii.events import Event

HINT_DETECTOR = "vlm"


@dataclass(frozen=True)
class TrackOptions:
    iou: float = 0.15  # a detection continues a track when it overlaps its last box this much...
    center: float = 0.75  # ...or its center is within this fraction of the box size
    link_gap: float = 0.6  # seconds a track survives without a detection (missed detections are bridged)
    margin: float = 0.5  # seconds a box is held before the first and after the last detection
    box_interval: float = 0.5  # seconds between the boxes an event keeps


def family(category: str) -> str:
    """Plates and text link to each other: recognition may call the same box either."""
    return "text" if category in ("license_plate", "text") else category


@dataclass
class Keyframe:
    t: float
    box: np.ndarray
    score: float
    category: str
    value: str | None
    detector: str


@dataclass
class Track:
    id: int
    family: str
    link_gap: float
    margin: float
    keyframes: list[Keyframe] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # keyframe times, for bisect
    closed: bool = False
    carried: bool = False  # its first keyframe is the last of a part already logged (split)

    @property
    def start(self) -> float:
        return self.keyframes[0].t

    @property
    def end(self) -> float:
        return self.keyframes[-1].t

    @property
    def category(self) -> str:
        if self.family != "text":
            return self.keyframes[0].category
        votes = Counter(k.category for k in self.keyframes if k.value)
        # a plate is read as a plate only on some frames (small, blurred, oblique): a third is enough
        plate = votes["license_plate"] > 0 and 3 * votes["license_plate"] >= sum(votes.values())
        return "license_plate" if plate else "text"

    @property
    def value(self) -> str | None:
        category = self.category
        values = Counter(k.value for k in self.keyframes if k.value and k.category == category)
        values = values or Counter(k.value for k in self.keyframes if k.value)
        return min(values, key=lambda v: (-values[v], v)) if values else None

    @property
    def detector(self) -> str:
        return "+".join(dict.fromkeys(k.detector for k in self.keyframes))

    @property
    def logged(self) -> bool:
        """Nothing seen since its part before was logged (split): no event of its own."""
        return self.carried and len(self.keyframes) == 1

    @property
    def hint_only(self) -> bool:
        return all(k.detector == HINT_DETECTOR for k in self.keyframes)

    def add(self, keyframe: Keyframe) -> None:
        self.keyframes.append(keyframe)
        self.times.append(keyframe.t)

    def split(self) -> Track:
        """The track so far, as a closed track of its own; this one goes on from its latest
        keyframe alone (a camera's parked car would otherwise gather keyframes for weeks)."""
        done = Track(self.id, self.family, self.link_gap, self.margin, self.keyframes, self.times, closed=True)
        self.keyframes, self.times, self.carried = self.keyframes[-1:], self.times[-1:], True
        return done

    def box_at(self, t: float) -> np.ndarray | None:
        """The box to mask at time ``t``, or None when the track does not cover ``t``."""
        i = bisect.bisect_right(self.times, t)
        before = self.keyframes[i - 1] if i > 0 else None
        after = self.keyframes[i] if i < len(self.keyframes) else None
        if before is not None and before.t == t:
            return before.box
        if before is not None and after is not None and after.t - before.t <= self.link_gap:
            w = (t - before.t) / (after.t - before.t)
            return (1 - w) * before.box + w * after.box
        if before is not None and t - before.t <= self.margin:
            return self._held(i - 1, t - before.t)
        if after is not None and after.t - t <= self.margin:
            return self._held(i, t - after.t)
        return None

    def _held(self, index: int, dt: float) -> np.ndarray:
        """The keyframe's box, stretched to where its motion would carry it ``dt`` seconds away."""
        box = self.keyframes[index].box
        other = index - 1 if dt > 0 else index + 1
        if not 0 <= other < len(self.keyframes) or self.keyframes[other].t == self.keyframes[index].t:
            return box
        velocity = (box - self.keyframes[other].box) / (self.keyframes[index].t - self.keyframes[other].t)
        moved = box + velocity * dt
        return np.concatenate([np.minimum(box[:2], moved[:2]), np.maximum(box[2:], moved[2:])])

    def to_event(self, source: str, box_interval: float = 0.5) -> Event:
        boxes, last = [], None
        for k in self.keyframes:
            if last is None or k.t - last >= box_interval or k is self.keyframes[-1]:
                boxes.append(TimedBox(round(k.t, 3), tuple(round(float(v), 1) for v in k.box)))
                last = k.t
        return Event(
            category=self.category,
            start=self.start,
            end=self.end,
            source=source,
            value=self.value,
            confidence=round(max(k.score for k in self.keyframes), 3),
            detector=self.detector,
            boxes=boxes,
        )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: np.ndarray, b: np.ndarray, fraction: float) -> bool:
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    distance = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return distance <= fraction * size


class Tracker:
    """Feed ``update`` with detections in time order; read ``boxes_at`` for frames up to the
    latest detection time minus the largest ``link_gap`` (later keyframes may still change them)."""

    def __init__(self, options: TrackOptions | None = None) -> None:
        self.options = options or TrackOptions()
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(
        self, t: float, detections: Detections, link_gap: float | None = None, margin: float | None = None
    ) -> None:
        link_gap = self.options.link_gap if link_gap is None else link_gap
        margin = self.options.margin if margin is None else margin
        open_tracks = [tr for tr in self.tracks if not tr.closed and t - tr.end <= tr.link_gap and tr.end < t]
        pairs = []
        for d in range(len(detections)):
            for tr in open_tracks:
                if tr.family != family(detections.categories[d]):
                    continue
                last = tr.keyframes[-1].box
                overlap = _iou(last, detections.boxes[d])
                if overlap >= self.options.iou or _near(last, detections.boxes[d], self.options.center):
                    pairs.append((-overlap, tr.id, d, tr))
        pairs.sort(key=lambda p: p[:3])  # best overlap first, ties by track id and detection index
        used_tracks, used_dets = set(), set()
        for _, track_id, d, tr in pairs:
            if track_id in used_tracks or d in used_dets:
                continue
            used_tracks.add(track_id)
            used_dets.add(d)
            tr.add(self._keyframe(t, detections, d))
        for d in range(len(detections)):
            if d not in used_dets:
                track = Track(self._next_id, family(detections.categories[d]), link_gap, margin)
                track.add(self._keyframe(t, detections, d))
                self.tracks.append(track)
                self._next_id += 1

    @staticmethod
    def _keyframe(t: float, detections: Detections, d: int) -> Keyframe:
        return Keyframe(
            t,
            detections.boxes[d].astype(np.float64),
            float(detections.scores[d]),
            detections.categories[d],
            detections.values[d],
            detections.detector,
        )

    def close(self, now: float) -> list[Track]:
        """Tracks that no detection at ``now`` or later can extend, newly closed, in start order."""
        done = [tr for tr in self.tracks if not tr.closed and now - tr.end > tr.link_gap]
        for tr in done:
            tr.closed = True
        return sorted(done, key=lambda tr: (tr.start, tr.id))

    def close_all(self) -> list[Track]:
        return self.close(float("inf"))

    def forget(self, before: float) -> None:
        """Drop closed tracks whose masks end before ``before`` (every frame up to it is written)."""
        self.tracks = [tr for tr in self.tracks if not (tr.closed and tr.end + tr.margin < before)]

    def boxes_at(self, t: float) -> list[tuple[str, np.ndarray]]:
        """(category family, box) of every track covering time ``t``."""
        found = []
        for tr in self.tracks:
            if tr.start - tr.margin <= t <= tr.end + tr.margin:
                box = tr.box_at(t)
                if box is not None:
                    found.append((tr.family, box))
        return found


def track_detections(
    detections: Iterable[tuple[float, Detections]], options: TrackOptions | None = None
) -> Iterator[Track]:
    """Link ``(t, detections)`` pairs, in time order, into tracks; each is yielded once final."""
    tracker = Tracker(options)
    for t, found in detections:
        yield from tracker.close(t)
        tracker.update(t, found)
        tracker.forget(t - tracker.options.link_gap - tracker.options.margin)
    yield from tracker.close_all()
