"""Gate: the cheap stage between windows and the VLM. Which windows can hold personal data?

Surveillance footage is mostly an empty, unchanging scene, and a Qwen2-VL call per window is
the dominant cost. Like faster-whisper's VAD in front of Whisper, the gate lets a window
through only when something can be in it:

- ``off``: every window is analyzed.
- ``motion``: a window is analyzed when one of its frames differs from the sampled frame
  before it (frame differencing on small grayscale copies, after cancelling any global
  brightness change, so auto-exposure, flicker and compression noise do not count).
- ``detect`` (default): ``motion``, plus face and text detectors on the frames of windows
  that motion let go: a face or a line of text seen anywhere in a window sends it to the VLM
  even in a scene that does not move (a person sitting still, a parked car's plate).

The first window is always analyzed: there is nothing to compare it with. Overlapping windows
share frames, so per-frame work (the small grayscale copy, the motion score, each detector's
verdict) is cached by ``Frame.index`` and computed once; the cache only holds the current
window's frames and the frame before them, whatever the length of the input. Frame indices
going backwards mean a new input: the gate then starts over as for a first window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streampii.detectors import Detections, Detector
from streampii.errors import check_range
from streampii.masks import block_means
from streampii.sampler import Frame
from streampii.timing import StageTimes
from streampii.windows import Window

GATE_MODES = ("off", "motion", "detect")


@dataclass(frozen=True)
class GateOptions:
    mode: str = "detect"  # the default: motion alone would skip people who sit still in view
    # A window is analyzed when, between two consecutive sampled frames, more than this
    # fraction of the (small) frame changed. 0.1% of a 160x89 copy is 14 pixels: a figure of
    # 12x12 pixels on the 504x280 grid (about 46x46 in 1080p) appearing is above it. Noise sets
    # no floor: still scenes measure 0.0% on the shared clips and with sensor noise of sigma 20.
    motion_threshold: float = 0.001
    # A pixel changed when it differs by more than this (0-255 gray levels) after the global
    # gain/offset is cancelled: noise after downscaling and blurring stays within a few levels,
    # a person against a background differs by tens (the usual frame-differencing value).
    pixel_threshold: float = 25.0
    # Longer side of the grayscale copy that is compared: downscaling averages out sensor and
    # compression noise and keeps a frame's differencing well under a millisecond.
    motion_size: int = 160
    # Detection scores that count as "something is there". CenterFace on frames at the Qwen
    # grid scores clear faces 0.85-0.96 and small crowd faces (10-17 px) 0.2-0.8; a missed face
    # in a still scene loses PII while a false hit costs one VLM call, so the bar is low.
    face_score: float = 0.3
    # PP-OCR line boxes score 0.75-0.82 for the best line of real signs (shared images) at
    # the Qwen grid, but 0.5-0.65 on road markings in the shared parking-lot clip: below 0.7,
    # every window of an empty car park would go to the VLM.
    text_score: float = 0.7
    # Run the detectors on every n-th sampled frame (by Frame.index, so overlapping windows
    # share results) of a window that motion let go, on its first and on each of its frames that
    # differs from the one before it at all (a pixel beyond pixel_threshold). The others repeat
    # the frame before them, so looking at every frame mostly repeats the same answer: 4 (two
    # frames of a default window) measured 4x less detector time on idle footage.
    detect_every: int = 4
    # A still window that looks like the frame the detectors last ran on (no pixel of the grey
    # copy changed by more than pixel_threshold, a global brightness change cancelled) gets that
    # run's verdict without running them: the same picture holds the same things. They run again
    # `redetect_after` seconds on, in case a change too faint for pixel_threshold came in...
    redetect_after: float = 30.0
    # ...unless nothing changed at all: no pixel of the grey copy moved by more than this many
    # levels (compression and sensor noise: at most 1.5 on the benchmark's clip, 30 s apart).
    # Hours of an empty scene then cost no detection (0: run again after redetect_after anyway).
    still_level: float = 3.0

    def __post_init__(self) -> None:
        if self.mode not in GATE_MODES:
            raise ValueError(f"--gate must be one of {', '.join(GATE_MODES)}, got {self.mode!r}")
        if not 0.0 <= self.motion_threshold <= 1.0:
            raise ValueError(f"gate motion_threshold must be between 0 and 1, got {self.motion_threshold}")
        if not 0.0 < self.pixel_threshold <= 255.0:
            raise ValueError(f"gate pixel_threshold must be above 0 and at most 255, got {self.pixel_threshold}")
        if self.motion_size < 16:
            raise ValueError(f"gate motion_size must be at least 16 pixels, got {self.motion_size}")
        for name in ("face_score", "text_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"gate {name} must be between 0 and 1, got {getattr(self, name)}")
        check_range("gate redetect_after", self.redetect_after, 0, 3600, unit=" s")
        if not 0.0 <= self.still_level <= 255.0:
            raise ValueError(f"gate still_level must be between 0 and 255, got {self.still_level}")
        if self.detect_every < 1:
            raise ValueError(f"gate detect_every must be at least 1, got {self.detect_every}")


@dataclass
class GateDecision:
    window: Window
    analyze: bool
    reason: str  # "gate off", "first window", "motion 4.2%", "face", "text", "plate" or "idle"
    # largest changed-pixel fraction between consecutive sampled frames, the window's first frame
    # against the one before it included (a change at a window boundary counts); 0.0 when off
    motion: float


def small_gray(image: np.ndarray, size: int = 160) -> np.ndarray:
    """A float32 grayscale copy of ``image`` (HxWx3 RGB) whose longer side is ``size``, blurred.

    INTER_AREA averages the pixels it merges and the 3x3 blur takes what noise is left, so
    per-pixel compression and sensor noise drops to a few gray levels. Grey first, then block
    means by a whole factor (OpenCV's fast path), then the rest of the way: 0.2 ms for a frame
    on the 504x280 grid, where one INTER_AREA by a fractional factor on RGB took 1 ms.
    """
    h, w = image.shape[:2]
    scale = min(1.0, size / max(h, w))
    dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    factor = min(int(1 / scale), h, w)  # (a sliver of a picture keeps at least one row)
    if factor > 1:
        gray = block_means(gray, factor)
    if (gray.shape[1], gray.shape[0]) != dims:
        gray = cv2.resize(gray, dims, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(gray.astype(np.float32), (3, 3), 0)


def changed_fraction(previous: np.ndarray, current: np.ndarray, pixel_threshold: float = 25.0) -> float:
    """Fraction of pixels that changed between two ``small_gray`` images, 0.0 to 1.0.

    A global brightness change (auto-exposure, a cloud, a flickering lamp) maps every pixel
    through about the same gain and offset, so ``previous ~ gain * current + offset`` is fitted
    by least squares and only what the fit cannot explain counts. The fit is repeated on the
    pixels it explains, so a person walking in (a minority of pixels) does not bend it.
    """
    if previous.shape != current.shape:
        return 1.0  # the stream changed resolution: nothing is comparable
    residual = np.abs(previous - current)
    if not (residual > pixel_threshold).any():
        return 0.0  # nothing changed as it is: no gain to fit (most frames of an idle camera)
    x, y = current.ravel().astype(np.float64), previous.ravel().astype(np.float64)
    still = np.ones(x.size, bool)
    for _ in range(3):
        gain, offset = _fit_gain(x[still], y[still])
        residual = np.abs(y - (gain * x + offset))
        explained = residual <= pixel_threshold
        # stop when the fit is stable, or when too few pixels agree to fit a gain on
        if explained.sum() < 0.1 * x.size or np.array_equal(explained, still):
            break
        still = explained
    return float(np.count_nonzero(residual > pixel_threshold) / x.size)


def _fit_gain(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    var = x.var()
    if var < 1.0:  # a flat image: only an offset can be fitted
        return 1.0, float(y.mean() - x.mean())
    # clamped: a gain beyond 3x is not exposure drift but a different scene (lights on, a cut)
    gain = float(np.clip(((x - x.mean()) * (y - y.mean())).mean() / var, 1 / 3, 3.0))
    return gain, float(y.mean() - gain * x.mean())


@dataclass
class _Slot:
    """A detector, built on first use when the gate made it itself (models load in seconds)."""

    name: str
    build: Callable[[], Detector]
    detector: Detector | None = None

    def get(self) -> Detector:
        if self.detector is None:
            self.detector = self.build()
        return self.detector


def _default_slots() -> list[_Slot]:
    # imports inside: rapidocr's import alone takes seconds, and motion-only runs need neither
    def face() -> Detector:
        from streampii.detectors.face import FaceDetector

        return FaceDetector()

    def text() -> Detector:
        from streampii.detectors.text import TextDetector, TextOptions

        # boxes are enough to gate on (a plate is then "text"); recognition would double the cost
        # and frames on the Qwen grid are small: PP-OCR's default 736-pixel input would upscale them
        return TextDetector(kinds=("plate", "text"), options=TextOptions(recognize=False, side_len=480))

    # cheapest first: CenterFace takes a fraction of PP-OCR's time, and one hit ends the search
    return [_Slot("centerface", face), _Slot("ppocr", text)]


class Gate:
    """Decides, window by window, whether a window goes to the VLM. One gate per input stream."""

    def __init__(self, options: GateOptions, detectors: Sequence[Detector] | None = None) -> None:
        self.options = options
        if options.mode != "detect":
            self._slots: list[_Slot] = []
        elif detectors is None:
            self._slots = _default_slots()
        else:
            # given detectors run in the order given: put the cheapest first
            self._slots = [_Slot(getattr(d, "name", type(d).__name__), lambda d=d: d, d) for d in detectors]
        self.reset()

    def reset(self) -> None:
        """Forget the stream, its counts and times (a new input starts); built detectors are kept."""
        self.times = StageTimes()
        self._small: dict[int, np.ndarray] = {}  # frame index -> small_gray copy (last frame seen only)
        self._motion: dict[int, float | None] = {}  # frame index -> changed fraction vs the frame before
        self._found: dict[tuple[int, int], str | None] = {}  # (frame index, slot) -> reason or None
        self._last_start: int | None = None  # first frame index of the previous window
        self._reference: tuple[float, np.ndarray, str | None] | None = None  # last detector run: t, picture, verdict
        self.detector_runs = 0  # windows whose frames went through the detectors
        self.detector_reuses = 0  # still windows that took the last run's verdict instead

    def decide(self, window: Window) -> GateDecision:
        if self.options.mode == "off":
            return GateDecision(window, True, "gate off", 0.0)
        frames = list({f.index: f for f in window.frames}.values())  # the tail window repeats its last frame
        start = frames[0].index
        if self._last_start is not None and start < self._last_start:
            self.reset()  # indices went backwards: a new input
        first = self._last_start is None
        self._last_start = start
        self._forget_before(start)

        scores = [self._frame_motion(f) for f in frames]
        motion = max((s for s in scores if s is not None), default=0.0)
        # keep only the newest copy: the next window's frames follow this window's
        newest = max(self._small)
        self._small = {newest: self._small[newest]}
        picture = self._small[newest], frames[-1].t

        if first:
            return GateDecision(window, True, "first window", motion)
        if motion > self.options.motion_threshold:
            return GateDecision(window, True, f"motion {motion * 100:.1f}%", motion)
        if None in scores:
            # a frame with nothing before it to compare with (windows given out of order): unknown
            return GateDecision(window, True, "no reference frame", motion)
        if not self._slots:  # motion alone: a still window is idle, no detector to run or reuse
            return GateDecision(window, False, "idle", motion)
        found = self._reused(*picture)
        if found == "":
            every = self.options.detect_every
            # every n-th frame, the first and each that differs from the one before it at all (a change
            # too small for motion can be a whole face on a large grid, there for a second or two):
            # every other frame of the window repeats one of these
            seen = [f for i, f in enumerate(frames) if i == 0 or scores[i] or f.index % every == 0]
            found, looked = self._detect(seen)
            self.detector_runs += 1
            # later windows are compared with the picture the verdict is about (the hit's, or the
            # newest the detectors looked at), not the window's last: what came in after it, or
            # went, is not in the verdict
            self._reference = (looked.t, small_gray(looked.image, self.options.motion_size), found)
        else:
            self.detector_reuses += 1
        if found:
            return GateDecision(window, True, found, motion)
        return GateDecision(window, False, "idle", motion)

    @property
    def detects(self) -> bool:
        """Whether detectors look at still windows (``detect``), or motion alone decides."""
        return bool(self._slots)

    def describe(self) -> dict:
        """The gate's settings for the manifest."""
        o = self.options
        info: dict = {"mode": o.mode}
        if o.mode == "off":
            return info
        info.update(motion_threshold=o.motion_threshold, pixel_threshold=o.pixel_threshold, motion_size=o.motion_size)
        if o.mode == "detect":
            info.update(
                face_score=o.face_score,
                text_score=o.text_score,
                detect_every=o.detect_every,
                redetect_after=o.redetect_after,
                still_level=o.still_level,
                detectors=[slot.name for slot in self._slots],
            )
        return info

    def _reused(self, small: np.ndarray, t: float) -> str | None:
        """The last detector run's verdict (None: nothing found) when this picture is the same
        as the one it ran on, or "" when the detectors must run."""
        if self._reference is None:
            return ""
        ran_at, reference, verdict = self._reference
        if t < ran_at or reference.shape != small.shape:
            return ""
        if t - ran_at > self.options.redetect_after:
            # only the very same picture, up to noise, keeps its verdict this long
            level = self.options.still_level
            return verdict if level and cv2.norm(reference, small, cv2.NORM_INF) <= level else ""
        # not a pixel beyond pixel_threshold (after any brightness change): a change too small to be
        # motion can be a whole face on a large grid (a 32-px face in 1080p is 0.08% of the copy)
        if changed_fraction(reference, small, self.options.pixel_threshold) > 0.0:
            return ""
        return verdict

    def _forget_before(self, start: int) -> None:
        # windows only move forward: frames before this window's first are never asked for again
        self._motion = {i: m for i, m in self._motion.items() if i >= start}
        self._found = {k: v for k, v in self._found.items() if k[0] >= start}

    def _frame_motion(self, frame: Frame) -> float | None:
        if frame.index in self._motion:
            return self._motion[frame.index]
        small = small_gray(frame.image, self.options.motion_size)
        earlier = [i for i in self._small if i < frame.index]
        score = changed_fraction(self._small[max(earlier)], small, self.options.pixel_threshold) if earlier else None
        self._small[frame.index] = small
        self._motion[frame.index] = score
        return score

    def _detect(self, chosen: list[Frame]) -> tuple[str | None, Frame]:
        """The first hit's reason ("face", "text", "plate") and frame, or None and the last frame:
        cached hits first, then each detector in turn (cheapest first) on the ``chosen`` frames
        it has not seen."""
        for f in chosen:  # a hit from the previous window, by any detector, costs nothing
            for k in range(len(self._slots)):
                if self._found.get((f.index, k)):
                    return self._found[(f.index, k)], f
        for k, slot in enumerate(self._slots):
            for f in chosen:
                if (f.index, k) not in self._found:
                    # model time, reported apart from the gate's own: a detector's first use loads it,
                    # as the redactor's and the VLM's are loaded before a run
                    with self.times.stage("gate_detect"):
                        found = slot.get().detect(f.image)
                    self._found[(f.index, k)] = self._hit(found)
                    if self._found[(f.index, k)]:
                        return self._found[(f.index, k)], f
        return None, chosen[-1]

    def _hit(self, found: Detections) -> str | None:
        for category, score in zip(found.categories, found.scores, strict=True):
            if category == "face":
                if score >= self.options.face_score:
                    return "face"
            elif score >= self.options.text_score:
                return "plate" if category == "license_plate" else "text"
        return None


def gate_windows(windows: Iterable[Window], gate: Gate) -> Iterator[GateDecision]:
    """One decision per window, streamed: the pipeline sends ``decision.analyze`` windows on."""
    for window in windows:
        yield gate.decide(window)
