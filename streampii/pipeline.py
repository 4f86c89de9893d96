"""One input through every stage: source -> sampler -> windows -> analyzers -> events -> sinks.

``watch`` is the whole job for one input. It streams: frames are decoded as windows need
them, and each event is written the moment no later window can change it.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import cv2

from streampii import __version__
from streampii.analyzers import Analyzer, WindowResult
from streampii.analyzers.qwen import DEFAULT_MODEL  # the module loads torch only with a model
from streampii.chunks import can_split, cpu_share, default_workers, sample_in_chunks
from streampii.detectors import Detector
from streampii.errors import InputError, OutputFolderError, check_range
from streampii.events import LIVE_EVENT_SPAN, Event, EventMerger, wall_iso
from streampii.gate import Gate, GateDecision, GateOptions
from streampii.lending import Lender
from streampii.redactor import RedactOptions, Redactor, build_detectors
from streampii.rtsp import LiveOptions, LiveSource, is_live
from streampii.sampler import GRID, MAX_ASPECT_RATIO, Frame, SamplerOptions, needed_near_ticks, sample_frames
from streampii.sinks import EventLog, Latest, write_json_atomic
from streampii.source import (
    NO_TIMESTAMPS,
    DecodeReport,
    VideoInfo,
    decode_video,
    describe,
    every_frame_threads,
    is_url,
    open_video,
    redact_url,
)
from streampii.state import STATE_FILE, Resume, RunState, event_from_state, event_to_state, fingerprint, input_key
from streampii.timing import StageTimes, ThreadGroup
from streampii.windows import Window, WindowOptions, sliding_windows

MANIFEST_EVERY = 5.0  # seconds between manifest rewrites during a run
# A camera's run has no end: its manifest keeps the latest rows (an hour at the default stride).
# All of a week's rows were 18.7 MB of JSON, 0.47 CPU s to write every MANIFEST_EVERY.
LIVE_WINDOW_ROWS = 600
# Frames a file's decoder is asked for in one go, and the redactor writes in one go: each stage
# then works on several frames in a row, its code and tables still in the caches, instead of the
# decoder, the redactor's checks and x264 evicting one another's at every frame. FFmpeg's frame
# threads, too, work in bursts instead of waking for every frame. Measured in --blur runs of a
# 720p clip (docs/performance.md): 8 frames against 1, 26% less decode CPU; writing the burst in
# one go, 14% less CPU outside the models and x264; 16 frames against 8, 8% less, 32 no better.
# Small frames get up to 16, within READ_AHEAD_BYTES; larger ones 8 (a 4K frame is 12 MB).
READ_AHEAD, READ_AHEAD_MAX, READ_AHEAD_BYTES = 8, 16, 24 << 20
logger = logging.getLogger("streampii.pipeline")
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")  # what --device accepts
MAX_BATCH = 256  # windows per generate call: far past the 32 that docs/performance.md measured
QWEN_CONTEXT = 32768  # Qwen2-VL's max_position_embeddings: prompt, visual tokens and answer together
MAX_NEW_TOKENS = QWEN_CONTEXT  # no answer is longer than the context
# A file name holds 255 bytes: a stem this long leaves room for its longest output name
# (<stem>-N.redacted.clipNNN.mp4.partial, <stem>.manifest.json.tmp)
MAX_STEM_BYTES = 200
PROMPT_TOKENS = 1024  # the system prompt and a window's text (about 400), with room to spare


@dataclass(frozen=True)
class WatchOptions:
    out: Path
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    windows: WindowOptions = field(default_factory=WindowOptions)
    vlm: str = "auto"
    model: str = DEFAULT_MODEL
    device: str = "auto"
    batch_size: int = 1
    max_new_tokens: int = 512
    # or "static" (see QwenAnalyzer); the answers are the same, so it is no setting a resume checks:
    # the manifest's analyzer section records it
    kv_cache: str = "dynamic"
    blur: bool = False
    # no VLM analyses the input: the detectors of `redact.detect` look at every frame as with --blur,
    # for their events (tracks of faces and plates), and no video is written
    detectors_alone: bool = False
    redact: RedactOptions = field(default_factory=RedactOptions)
    gate: GateOptions = field(default_factory=GateOptions)
    # decoders working side by side on a file's keyframe chunks (0: one per CPU and one more; 1: a single
    # decoder). Not a setting: the frames are the same either way.
    decode_workers: int = 0
    cpus: int = 0  # the CPUs this input may count on (0: all this process may use; --jobs shares them)

    def __post_init__(self) -> None:
        if not DEVICES.fullmatch(self.device):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check_range("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_range("--max-new-tokens", self.max_new_tokens, 16, MAX_NEW_TOKENS)
        frames = self.windows.frame_counts(self.sampler.fps)[0]  # raises when a window would hold too many frames
        if self.vlm != "off" and not self.detectors_alone:
            # two frames make one temporal patch, of at most max_pixels / 28^2 tokens
            visual = frames // 2 * (self.sampler.max_pixels // (GRID * GRID))
            if visual + PROMPT_TOKENS + self.max_new_tokens > QWEN_CONTEXT:
                raise ValueError(
                    f"--window {self.windows.window:g} s at --fps {self.sampler.fps:g} and --max-pixels"
                    f" {self.sampler.max_pixels}: up to {visual} visual tokens a window, which with --max-new-tokens"
                    f" {self.max_new_tokens} exceeds Qwen2-VL's {QWEN_CONTEXT}-token context"
                    " (shorten --window, lower --fps or --max-pixels)"
                )
        if self.detectors_alone and not self.redact.detect:
            raise ValueError("--detect must name at least one kind for the detectors to run alone")

    def settings(self) -> dict:
        settings = {
            **asdict(self.sampler),
            **asdict(self.windows),
            "vlm": self.vlm,
            "model": redact_url(self.model),
            "device": self.device,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "blur": self.blur,
            "gate": asdict(self.gate),
        }
        if self.blur or self.detectors_alone:
            settings["redact"] = asdict(self.redact)
        if self.detectors_alone:
            settings["detectors_alone"] = True
        return settings


# Windows per generate call on a CUDA GPU when --batch-size is not given: the answer's decode steps
# cost a batch about what they cost one window (Qwen2-VL-7B on an H200: 3.05 windows/s at 8 against
# 0.49 one at a time, docs/performance.md), at 2 GiB more GPU memory than one window.
GPU_BATCH = 8


def default_batch_size(device: str, live: bool, blur: bool) -> int:
    """``--batch-size`` when it is not given: ``GPU_BATCH`` for files on a CUDA GPU, else 1.

    A camera's windows arrive one a stride: a batch would hold each event back until the batch is
    full. With --blur, frames wait at most ``RedactOptions.max_hold`` seconds for the VLM's boxes,
    less than a batch of windows spans. On a CPU a batch costs what its windows cost one by one.
    """
    return GPU_BATCH if device.startswith("cuda") and not live and not blur else 1


@dataclass
class Progress:
    source: str
    done: float  # seconds of video analysed
    total: float | None
    windows: int
    events: int


@dataclass
class RunResult:
    source: str
    state: str  # complete | truncated | interrupted | failed (its results could not be written)
    events: int = 0
    windows: int = 0
    windows_failed: int = 0
    windows_unanswered: int = 0  # of them, those whose model call failed (no answer at all)
    unanswered_reason: str | None = None
    frames_sampled: int = 0
    duration: float | None = None
    error: str | None = None  # also with state complete: a camera's recording failed (exit code 3)
    outputs: dict[str, str | list[str]] = field(default_factory=dict)  # the files written
    by_category: dict[str, int] = field(default_factory=dict)


def output_stem(source: str) -> str:
    """File stem for an input's outputs: the file's stem, or a readable name for a URL made of its
    host, port and path only (no credentials, no query string: it may carry ``?password=``), cut
    to ``MAX_STEM_BYTES``."""
    if is_url(source):
        rest = redact_url(source).split("://", 1)[1].replace("***@", "")
        rest = re.split(r"[?#]", rest, maxsplit=1)[0]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rest).strip("_.") or "stream"
    else:
        stem = Path(source).stem or "input"
    while len(os.fsencode(stem)) > MAX_STEM_BYTES:  # by characters: a name stays whole UTF-8
        stem = stem[:-1]
    return stem


def watch(
    source: str,
    options: WatchOptions,
    analyzers: Sequence[Analyzer] = (),
    *,
    analyzer_note: str | None = None,
    stem: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
    state: RunState | None = None,
    live: LiveOptions | None = None,
    extra: dict | None = None,
    wall_start: float | None = None,
    models: Lender[StageModels] | None = None,
) -> RunResult:
    """Analyse one input and write its event log and manifest into ``options.out``.

    Raises ``InputError`` when the input cannot be opened at all (nothing is written then), and
    ``OutputError`` when its results cannot be written (the manifest then says failed, where it can).
    ``state``: resume where a killed run stopped. ``live``: options for rtsp:// sources.
    ``extra``: keys every event carries (segment name). ``wall_start``: UNIX time of t = 0,
    so events get wall-clock times (live sources always have them). ``models``: the detectors
    and gates of a command's inputs (``stage_models(options)``), reused from input to input
    (None: this input builds its own).
    """
    with (models or stage_models(options)).lend() as kit:
        return _watch(
            source, options, analyzers, kit, analyzer_note=analyzer_note, stem=stem, on_progress=on_progress,
            on_event=on_event, stop=stop, state=state, live=live, extra=extra, wall_start=wall_start,
        )  # fmt: skip


class StageModels:
    """An input's models besides the VLM: the redactor's detectors and the gate, each built
    when an input first needs it and kept for the next input (``stage_models``)."""

    def __init__(self, redact: RedactOptions, gate: GateOptions) -> None:
        self.redact, self.gate_options = redact, gate
        self._detectors: list[tuple[Detector, float]] | None = None
        self._gate: Gate | None = None

    def detectors(self) -> list[tuple[Detector, float]]:
        if self._detectors is None:
            self._detectors = build_detectors(self.redact)
        return self._detectors

    def gate(self) -> Gate:
        if self._gate is None:
            self._gate = Gate(self.gate_options)
        else:
            self._gate.reset()  # a new input: its own frames, counts and times
        return self._gate


def stage_models(options: WatchOptions) -> Lender[StageModels]:
    """The detectors and gates of a command's inputs, each built once (see ``streampii.lending``)."""
    return Lender(lambda: StageModels(options.redact, options.gate))


def _watch(
    source: str,
    options: WatchOptions,
    analyzers: Sequence[Analyzer],
    kit: StageModels,
    *,
    analyzer_note: str | None,
    stem: str | None,
    on_progress: Callable[[Progress], None] | None,
    on_event: Callable[[dict], None] | None,
    stop: threading.Event | None,
    state: RunState | None,
    live: LiveOptions | None,
    extra: dict | None,
    wall_start: float | None,
) -> RunResult:
    started = time.time()
    # OpenCV's own pool splits each call across a worker that then spins for more: on the small
    # pictures here that cost up to twice the CPU, on a thread no stage timer sees (a 3-minute
    # --blur run: 48.7 against 51.0 CPU s of the process per video minute)
    cv2.setNumThreads(1)
    stem = stem or output_stem(source)
    if is_live(source):
        if options.blur:
            raise InputError(
                redact_url(source), "--blur works on files: record the stream (--record DIR) and blur the segments"
            )
        camera = LiveSource(source, live, stop, stem=stem)
        info = camera.open()
        try:
            claim = _claim(options.out, stem, info.source)
        except BaseException:
            camera.close()
            raise
        source_ = _Source(camera.frames, camera.wall_clock, camera, None, claim=claim)
        if options.detectors_alone:  # frames the detectors fall behind on are dropped, as for a slow VLM
            try:
                source_.redactor = Redactor(
                    info, None, options.redact, on_event=source_.detector_events.append, detectors=kit.detectors()
                )
            except BaseException:
                camera.close()
                claim.close()
                raise
    else:
        container = open_video(source)
        try:
            info = describe(container, source)
            if max(info.width, info.height) > MAX_ASPECT_RATIO * min(info.width, info.height):
                # no frame of it could be sampled (the sampler, as Qwen2-VL, refuses them)
                raise InputError(info.source, f"{info.width}x{info.height}: aspect ratio above {MAX_ASPECT_RATIO}:1")
            claim = _claim(options.out, stem, info.source)
        except BaseException:
            container.close()
            raise
        clock = (lambda t: wall_start + t) if wall_start is not None else None
        detecting = options.blur or options.detectors_alone
        # the redactor needs every frame: then one full decode feeds both it and the sampler
        needed = None if detecting else needed_near_ticks(options.sampler, info.fps)
        threads = every_frame_threads(options.cpus or cpu_share()) if detecting else 0
        source_ = _Source(
            lambda report: decode_video(container, info, report, needed, threads),
            clock,
            None,
            container,
            read_ahead=read_ahead(info.width, info.height),
            claim=claim,
        )
        workers = options.decode_workers or default_workers()
        if not detecting and workers > 1 and can_split(container, info, options.sampler):
            source_.chunked = lambda report: sample_in_chunks(
                container, source, info, options.sampler, report, workers, source_.decoder_threads.add
            )
        if detecting:
            try:
                source_.redactor = Redactor(
                    info,
                    options.out / f"{stem}.redacted.mp4" if options.blur else None,
                    options.redact,
                    audio_source=source if info.has_audio else None,
                    on_event=source_.detector_events.append,
                    detectors=kit.detectors(),
                )
            except BaseException:
                container.close()
                claim.close()
                raise
    try:
        return _run(
            source_,
            info,
            source,
            options,
            analyzers,
            analyzer_note,
            stem,
            on_progress,
            on_event,
            stop,
            started,
            state,
            extra,
            kit,
        )
    except (OSError, sqlite3.Error) as exc:  # its outputs cannot be written: this input fails, the others go on
        raise OutputFolderError(info.source, _write_failure(exc, options.out)) from exc
    finally:
        source_.close()


def read_ahead(width: int, height: int) -> int:
    """Frames a file's decoder is asked for in one go (``READ_AHEAD``): up to ``READ_AHEAD_MAX``
    while they hold ``READ_AHEAD_BYTES`` of 8-bit 4:2:0 pictures, never fewer than ``READ_AHEAD``."""
    frame_bytes = max(1, width * height * 3 // 2)
    return max(READ_AHEAD, min(READ_AHEAD_MAX, READ_AHEAD_BYTES // frame_bytes))


@dataclass
class _Source:
    """Where frames come from: a file's container or a live camera."""

    frames: Callable[[DecodeReport], Iterator]
    wall_clock: Callable[[float], float] | None
    camera: LiveSource | None
    container: object | None
    redactor: Redactor | None = None
    detector_events: list[Event] = field(default_factory=list)  # detector tracks the redactor closed
    decoder_threads: ThreadGroup = field(default_factory=lambda: ThreadGroup("av:"))  # FFmpeg names its threads
    chunked: Callable[[DecodeReport], Iterator[Frame]] | None = None  # decoders side by side, already sampled
    read_ahead: int = 1  # frames decoded in one go (a camera's arrive when they arrive: one at a time)
    claim: IO | None = None  # the input's event log, locked while this run writes its outputs (_claim)

    def sampled(self, report: DecodeReport, timer: StageTimes, options: SamplerOptions) -> Iterator[Frame]:
        """Sampled frames, from one decoder (with the redactor fed on the way) or from chunks."""
        if self.chunked is None:
            return sample_frames(self.decoded(report, timer), options)
        return timer.wrap("decode", self.chunked(report))  # waiting for the workers, and picking

    def decoded(self, report: DecodeReport, timer: StageTimes) -> Iterator:
        """Decoded frames; with a redactor, each frame goes to it too (one decode pass for both),
        once the sampler has taken it: the redactor masks frames in place."""
        self.decoder_threads.start()
        frames = iter(self.frames(report))
        first = True
        while True:
            with timer.stage("decode"):
                burst = list(itertools.islice(frames, self.read_ahead))
            if first:  # the decoder has started its threads by now
                self.decoder_threads.collect()
                first = False
            for frame in burst:
                # pushed once the sampler has seen it: the sampler has then taken or dropped every earlier
                # frame, and a frame is masked only after a frame a look-ahead later has been pushed
                yield frame
                if self.redactor is not None:
                    with timer.stage("redact"):
                        self.redactor.push(frame, write=False)
            if self.redactor is not None:  # the burst's ready frames written in one go
                with timer.stage("redact"):
                    self.redactor.write_ready()
            if len(burst) < self.read_ahead:
                return

    def close(self) -> None:
        if self.redactor is not None:
            self.redactor.finish(cut=True)  # a stop or an error still leaves a playable (shorter) video
        if self.camera is not None:
            self.camera.close()
        if self.container is not None:
            self.container.close()
        if self.claim is not None:
            self.claim.close()  # its lock goes with it


def _claim(out: Path, stem: str, shown: str) -> IO:
    """The input's event log, opened (not cut) and locked while this run writes its outputs: a
    second run into the same ``--out`` with the same input (or stem) would write over them at the
    same time, interleaving the log and removing the other's redacted video. The lock goes when
    the file is closed, or with the process however it ends: never stale."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        claim = open(out / f"{stem}.events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise OutputFolderError(shown, _write_failure(exc, out)) from exc
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        claim.close()
        raise OutputFolderError(shown, f"another streampii run is writing its outputs ({stem}.*) in {out}") from None
    except OSError:  # a folder without locks (some network shares): the run goes on unguarded, as before
        logger.info("%s: %s cannot be locked; two runs into it at once would not be kept apart", shown, out)
    return claim


def _run(
    src: _Source,
    info: VideoInfo,
    source,
    options,
    analyzers,
    analyzer_note,
    stem,
    on_progress,
    on_event,
    stop,
    started,
    state: RunState | None,
    extra: dict | None,
    kit: StageModels,
) -> RunResult:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    events_path = out / f"{stem}.events.jsonl"
    manifest_path = out / f"{stem}.manifest.json"
    result = RunResult(
        source=info.source,
        state="running",
        duration=info.duration,
        outputs={"events": events_path.name, "manifest": manifest_path.name},
    )
    report = DecodeReport()
    timer = _StageTimer()
    manifest = _Manifest(manifest_path, info, options, analyzers, analyzer_note, started, src.decoder_threads)
    gap = options.windows.merge_gap(options.sampler.fps)
    merger = EventMerger(info.source, gap=gap, extra=extra, max_span=LIVE_EVENT_SPAN if info.live else None)
    resume = None
    redactor = src.redactor
    if redactor is not None:
        if redactor.output.path is not None:  # (the files it writes join the outputs once closed)
            manifest.extra["redaction"] = redactor.report.summary
        else:  # the detectors alone: their runs, no video
            manifest.extra["detectors"] = redactor.report.detection_summary
        timer.redactor = redactor
        if analyzers:  # VLM boxes are masked too: frames wait until no later window can add one
            redactor.release(0.0)
    if state is not None:
        key = input_key(source, stem)
        # a half-written MP4 or open tracks cannot be continued: a file is redone (a camera goes on
        # from now: its log is kept)
        if redactor is not None and not info.live:
            state.forget(key)
        resume = Resume(state, key, fingerprint(source, options.settings()), events_path)
    append = resume.start(merger, live=info.live) if resume is not None else False
    if not append:  # a file analysed anew: the raw answers of an earlier run's windows are not this run's
        shutil.rmtree(out / f"{stem}.debug", ignore_errors=True)
    if src.camera is not None:
        manifest.extra["live"] = src.camera.summary
    if extra:
        start_iso = wall_iso(src.wall_clock(0.0)) if src.wall_clock else None
        manifest.extra["segment"] = lambda: {**extra, "wall_start": start_iso}
    by_category: Counter[str] = Counter()
    window_rows = WindowRows(LIVE_WINDOW_ROWS if info.live else None)
    if resume is not None and resume.data and not info.live:
        # the windows a killed run finished are skipped: their counts go on (a camera's windows start anew)
        result.windows_failed = resume.data.get("windows_failed", 0)
        result.windows_unanswered = resume.data.get("windows_unanswered", 0)
        result.unanswered_reason = resume.data.get("unanswered_reason")
        window_rows.status.update(resume.data.get("window_status", {}))
        window_rows.visual_tokens = resume.data.get("visual_tokens", 0)

    def emit(events: list[Event], log: EventLog) -> None:
        for event in events:
            record = log.write(event)
            by_category[event.category] += 1
            if on_event is not None:
                on_event(record)

    fps = options.sampler.fps
    frames = _counted(src.sampled(report, timer, options.sampler), result)
    windows = sliding_windows(frames, options.windows, fps)
    step = options.windows.frame_counts(fps)[1]
    # the gate spares the VLM idle windows; with no VLM there is nothing to spare
    gate = kit.gate() if analyzers and options.gate.mode != "off" else None
    if gate is not None:
        timer.gate = gate
        manifest.extra["gate"] = lambda: {
            **gate.describe(),
            **({"detector_runs": gate.detector_runs, "detector_reuses": gate.detector_reuses} if gate.detects else {}),
        }
    else:
        manifest.extra["gate"] = lambda: {"mode": options.gate.mode if analyzers else "off (no VLM to spare)"}

    def keyed(events: list[Event]) -> list[Event]:
        for event in events:  # the keys the VLM's events get from the merger: segment, wall clock
            event.extra = {**(extra or {}), **event.extra}
            if src.wall_clock is not None:
                event.wall_start, event.wall_end = src.wall_clock(event.start), src.wall_clock(event.end)
        return sorted(events, key=lambda e: (e.start, e.category))

    def detector_events(log: EventLog) -> None:
        emit(keyed(src.detector_events), log)
        src.detector_events.clear()

    def checkpoint_data(log: EventLog) -> dict:
        data = _resume_data(log, by_category, result, window_rows)
        if info.live and redactor is not None:
            # a camera's tracks may stay open for hours: a killed run's are logged as they stood
            data["open_tracks"] = [event_to_state(e) for e in keyed(redactor.open_events())]
        return data

    # results that cannot be written end the input (OutputError), as a fault of ours does: the
    # manifest says so
    with (
        _failed_output(manifest, result, report, timer, window_rows, by_category),
        EventLog(events_path, append=append) as log,
    ):
        if resume is not None:
            log.count = resume.data.get("events", 0)
            by_category.update(resume.data.get("by_category", {}))
            if info.live:  # a restarted camera: events left open by the killed run cannot grow any more
                emit(merger.close(), log)
                emit([event_from_state(d) for d in resume.data.get("open_tracks", [])], log)
        manifest.save(result, report, timer, window_rows, by_category)
        last_save = time.monotonic()
        for batch in _batches(_gated(windows, gate, timer), options.batch_size):
            if resume is not None:  # windows a killed run finished: their events are in the log already
                for window, _ in (item for item in batch if resume.done(item[0].index)):
                    window_rows.append({**_window_row(window, []), "status": "resumed"})
                    result.windows += 1
                batch = [item for item in batch if not resume.done(item[0].index)]
                if not batch:
                    continue
            results = _analyze([w for w, decision in batch if decision.analyze], analyzers, timer)
            for window, decision in batch:
                rows = [r for r in results if r.window is window]
                if any(r.interrupted for r in rows):
                    # aborted before the model saw it: not done, so neither counted nor checkpointed
                    result.state = "interrupted"
                    break
                window_rows.append(_window_row(window, rows, decision))
                result.windows += 1
                result.windows_failed += any(r.error for r in rows)
                for r in (r for r in rows if r.unanswered):
                    result.windows_unanswered += 1
                    result.unanswered_reason = r.error
                for r in (r for r in rows if r.error):
                    span = f"{window.start:.2f}-{window.end:.2f} s"
                    logger.warning("%s: window %d (%s): %s", redact_url(info.source), window.index, span, r.error)
                findings = [f for r in rows for f in r.findings]
                emit(merger.add(findings, now=window.start, wall_clock=src.wall_clock), log)
                if redactor is not None:
                    if analyzers:
                        # frames before the next window's first frame are in no later window
                        frontier = window.frames[step].t - options.redact.margin if len(window.frames) > step else None
                        with timer.stage("redact_released"):
                            redactor.add_hints(findings)
                            redactor.release(frontier)
                    detector_events(log)
                _write_debug(out, stem, rows, LIVE_WINDOW_ROWS if info.live else None)
                if resume is not None:
                    resume.window_done(window.index, window.end, log, merger, checkpoint_data(log))
            if on_progress is not None:
                on_progress(Progress(info.source, batch[-1][0].end, info.duration, result.windows, log.count))
            if time.monotonic() - last_save > MANIFEST_EVERY:
                manifest.save(result, report, timer, window_rows, by_category)
                last_save = time.monotonic()
            if result.state == "interrupted" or (stop is not None and stop.is_set()):
                result.state = "interrupted"
                break
        if info.live and stop is not None and stop.is_set():
            # also a stop before the first window (the loop above never ran): a camera's clean end
            result.state = "interrupted"
        emit(merger.close(), log)
        if redactor is not None:
            with timer.stage("redact_released"):
                redactor.finish(cut=result.state == "interrupted")
            detector_events(log)
            result.outputs.update(redactor.report.outputs())
            if report.frames_skipped and report.frames_decoded and redactor.output.path is not None:
                # H.264 in MP4 needs a rising time for every frame: those with none are not written
                logger.warning(
                    "%s: %d frame(s) without a timestamp of their own (none, or the frame before's) left out"
                    " of the redacted video (decode.frames_skipped)",
                    redact_url(info.source),
                    report.frames_skipped,
                )
        result.events = log.count
        if result.state == "running":
            result.state = "truncated" if report.truncated(info) and not info.live else "complete"
            if info.live and report.error:  # the camera went away for good (or refused us)
                result.state = "truncated"
        if info.live and result.state == "interrupted":
            result.state = "complete"  # a camera has no end: a requested stop is its normal, clean end
        if resume is not None and result.state != "interrupted":
            # interrupted runs stay resumable: a restart cuts the log back to the last checkpoint
            resume.finish(result.state, log, checkpoint_data(log))
    if result.state == "truncated":
        where = f"{report.last_time:.2f}s" if report.last_time is not None else "the start"
        result.error = f"damaged or cut short: read up to {where}" + (f" ({report.error})" if report.error else "")
        if report.error == NO_TIMESTAMPS:
            result.error = report.error  # not damaged: decoded, but with no time to place the frames at
        if info.live:
            result.error = f"stream ended at {where}" + (f": {report.error}" if report.error else "")
    if result.windows_unanswered and result.error is None:  # an audit's gap: the run says so (exit 3)
        result.error = f"{result.windows_unanswered} window(s) got no answer from the VLM: {result.unanswered_reason}"
    if src.camera is not None:
        src.camera.close()  # the reader closes the last recorded file first: the manifest lists it
        recorder = src.camera.recorder
        if recorder is not None and recorder.errors and result.error is None:  # analysed, not all recorded
            result.error = f"recording failed ({recorder.errors} file(s) lost): {recorder.last_error}"
    result.by_category = dict(by_category)
    manifest.save(result, report, timer, window_rows, by_category, finished=True)
    if on_progress is not None:
        done = report.last_time or 0.0
        on_progress(Progress(info.source, done, info.duration or done, result.windows, result.events))
    return result


# the manifest's error of a run aborted by a second Ctrl-C
ABORTED = "stopped at once (a second Ctrl-C): the window in flight was not logged, a redacted video not finished"


@contextmanager
def _failed_output(manifest: _Manifest, result: RunResult, *state) -> Iterator[None]:
    """An output that cannot be written (the redacted video, the log, the manifest, the state: a full
    disk...), or any fault of ours, goes up as it came, the manifest first saved with the reason (state
    failed) where the disk still takes it: a manifest left "running" would tell an audit the input is
    still at work. A run aborted (KeyboardInterrupt) is saved as interrupted, with why."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C: no clean end, but no run at work either
            result.state, result.error = "interrupted", ABORTED
        elif isinstance(exc, InputError):  # OutputError, and any other met mid-run
            result.state, result.error = "failed", exc.reason
        elif isinstance(exc, OSError | sqlite3.Error):
            result.state, result.error = "failed", _write_failure(exc, manifest.path.parent)
        else:
            result.state, result.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        try:
            manifest.save(result, *state, finished=True)
        except OSError:
            pass  # (a full disk: the same fault) the input's error line says why
        raise


def _write_failure(exc: OSError | sqlite3.Error, out: Path) -> str:
    """Why an input's results could not be written into ``out``, in one line."""
    if isinstance(exc, sqlite3.Error):
        return f"cannot update {out / STATE_FILE}: {exc}"
    where = Path(exc.filename).name if exc.filename else f"its results in {out}"
    return f"cannot write {where}: {exc.strerror or exc}"


def _resume_data(log: EventLog, by_category: Counter, result: RunResult, window_rows: WindowRows) -> dict:
    return {
        "events": log.count,
        "by_category": dict(by_category),
        "windows_failed": result.windows_failed,
        "windows_unanswered": result.windows_unanswered,
        "unanswered_reason": result.unanswered_reason,
        "window_status": dict(window_rows.status),
        "visual_tokens": window_rows.visual_tokens,
    }


def _counted(frames, result: RunResult):
    for frame in frames:
        result.frames_sampled += 1
        yield frame


def _gated(windows: Iterator[Window], gate: Gate | None, timer: _StageTimer) -> Iterator[tuple[Window, GateDecision]]:
    """Each window with the gate's decision (all analysed when there is no gate)."""
    for window in timer.wrap("sample", windows):
        if gate is None:
            yield window, GateDecision(window, True, "no gate", 0.0)
            continue
        with timer.stage("gate"):
            decision = gate.decide(window)
        yield window, decision


def _batches(decided: Iterator[tuple[Window, GateDecision]], size: int) -> Iterator[list[tuple[Window, GateDecision]]]:
    """Windows in order, cut so that each batch holds ``size`` windows to analyse. Skipped windows
    ride along, but never pile up: one with nothing to analyse before it goes at once, and a batch
    is cut at 4 x ``size`` windows, so an idle hour neither waits in memory nor holds back the
    events and the redactor's frames."""
    size = max(1, size)
    batch: list[tuple[Window, GateDecision]] = []
    count = 0
    for window, decision in decided:
        batch.append((window, decision))
        count += decision.analyze
        if count >= size or count == 0 or len(batch) >= 4 * size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _analyze(batch: list[Window], analyzers: Sequence[Analyzer], timer: _StageTimer) -> list[WindowResult]:
    results: list[WindowResult] = []
    if not batch:
        return results
    for analyzer in analyzers:
        with timer.stage(analyzer.name):
            results.extend(analyzer.analyze(batch))
    return results


class WindowRows:
    """The manifest's per-window rows, with counts over every window of the run. ``keep``: hold
    only the latest rows (a camera), the older ones counted in ``rows.omitted``; None: all (a file).
    A resumed run starts from the counts of the windows the killed run finished; their rows say
    "resumed" and count there alone."""

    def __init__(self, keep: int | None = None) -> None:
        self.rows: Latest[dict] = Latest(keep)
        self.status: Counter[str] = Counter()
        self.visual_tokens = 0
        self.resumed = 0

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if row["status"] == "resumed":
            self.resumed += 1
            return
        self.status[row["status"]] += 1
        self.visual_tokens += row.get("visual_tokens", 0)


def _window_row(window: Window, rows: list[WindowResult], decision: GateDecision | None = None) -> dict:
    status = "failed" if any(r.error for r in rows) else ("analyzed" if rows else "no_analyzer")
    if decision is not None and not decision.analyze:
        status = "skipped"
    row: dict = {
        "index": window.index,
        "start": round(window.start, 3),
        "end": round(window.end, 3),
        "frames": len(window.frames),
        "status": status,
    }
    if decision is not None and decision.reason != "no gate":
        row["gate"] = decision.reason
    tokens = [r.visual_tokens for r in rows if r.visual_tokens is not None]
    if tokens:
        row["visual_tokens"] = sum(tokens)
    errors = [r.error for r in rows if r.error]
    if errors:
        row["error"] = "; ".join(errors)
    return row


def _write_debug(out: Path, stem: str, rows: list[WindowResult], keep: int | None = None) -> None:
    """The raw answers of failed windows, a file each in ``<stem>.debug/``; ``keep``: only the
    latest that many (a camera has no end: a model that keeps failing would fill the disk)."""
    folder = out / f"{stem}.debug"
    for r in rows:
        raw = getattr(r, "raw", None)
        if r.error and raw is not None:
            folder.mkdir(exist_ok=True)
            (folder / f"window-{r.window.index:05d}.{r.analyzer}.txt").write_text(raw, encoding="utf-8")
    if keep is not None and any(r.error for r in rows) and folder.is_dir():
        files = sorted(folder.iterdir(), key=lambda f: (f.stat().st_mtime_ns, f.name))
        for stale in files[: max(0, len(files) - keep)]:
            stale.unlink(missing_ok=True)


class _StageTimer(StageTimes):
    """Stage times of one input, each reported on its own: "sample" runs decode and the
    redactor's push inside it; the redactor and the gate time their own parts. "redact" is the
    redactor's own work around its timed parts (still tests, changed regions, tracks, the
    frames it holds), in its push ("redact", inside "sample") and in what the pipeline asks of
    it after a window ("redact_released": boxes from the VLM, frames released, the end)."""

    def __init__(self) -> None:
        super().__init__()
        self.redactor: Redactor | None = None
        self.gate: Gate | None = None  # its detectors' time runs inside "gate"

    def exclusive(self, cpu: bool = False) -> dict[str, float]:
        own = dict(self.cpu if cpu else self.wall)
        pushed, released = own.pop("redact", 0.0), own.pop("redact_released", 0.0)
        # "sample" pulls frames through decode and the redactor's push: count those apart
        own["sample"] = max(0.0, own.get("sample", 0.0) - own.get("decode", 0.0) - pushed)
        if self.gate is not None:
            spent = (self.gate.times.cpu if cpu else self.gate.times.wall)["gate_detect"]
            own["gate_detect"] = spent
            own["gate"] = max(0.0, own.get("gate", 0.0) - spent)
        if self.redactor is not None:
            inner = self.redactor.report.times.cpu if cpu else self.redactor.report.times.wall
            own.update(inner)
            # its timed parts run inside push, release and finish only
            own["redact"] = max(0.0, pushed + released - sum(inner.values()))
        return {k: round(v, 3) for k, v in own.items()}


class _Manifest:
    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        options: WatchOptions,
        analyzers,
        note,
        started: float,
        decoder_threads: ThreadGroup,
    ) -> None:
        self.path = path
        self.info = info
        self.options = options
        self.started = started
        self.cpu_started = time.process_time()
        self.thread_started = time.thread_time()  # the pipeline runs in the thread that calls watch()
        self.decoder_threads = decoder_threads
        self.analyzers = analyzers  # described at every save: an analyzer can change course (a failed static cache)
        self.note = note
        self.extra: dict[str, Callable[[], dict]] = {}  # sections added by live/segment sources

    def save(
        self,
        result: RunResult,
        report: DecodeReport,
        timer: _StageTimer,
        windows: WindowRows,
        by_category: Counter,
        finished: bool = False,
    ) -> None:
        wall = time.time() - self.started
        done = report.last_time or 0.0
        cpu = time.process_time() - self.cpu_started
        own = time.thread_time() - self.thread_started
        decoder = self.decoder_threads.cpu()
        data = {
            "streampii_version": __version__,
            "source": self.info.source,
            "state": result.state,
            "error": result.error,
            "started_at": _iso(self.started),
            "finished_at": _iso(time.time()) if finished else None,
            "settings": self.options.settings(),
            "input": self.info.to_dict(),
            "analyzers": [a.describe() for a in self.analyzers],
            "analyzers_note": self.note if not self.analyzers else None,
            "counts": {
                "frames_decoded": report.frames_decoded,
                "frames_sampled": result.frames_sampled,
                "windows_total": result.windows,
                "windows_analyzed": windows.status["analyzed"],
                "windows_skipped": windows.status["skipped"],
                "windows_failed": result.windows_failed,
                "windows_resumed": windows.resumed,
                "events": sum(by_category.values()),
                "events_by_category": dict(sorted(by_category.items())),
                "visual_tokens": windows.visual_tokens,
            },
            "decode": {
                "last_time": done,
                "decode_errors": report.decode_errors,
                "frames_skipped": report.frames_skipped,
                "error": report.error,
                "decoders": report.decoders,
            },
            "timings": {
                "wall_seconds": round(wall, 3),
                "stages": timer.exclusive(),
                "stages_cpu": timer.exclusive(cpu=True),
                "threads_cpu": {
                    "pipeline": round(own, 3),
                    "decoder": round(decoder, 3) if decoder is not None else None,
                    "other": round(cpu - own - (decoder or 0.0), 3),
                },
                "cpu_seconds": round(cpu, 3),
                "realtime_factor": round(done / wall, 3) if wall > 0 else None,
            },
            "outputs": result.outputs,
            "windows": list(windows.rows),
            **({"windows_omitted": windows.rows.omitted} if windows.rows.maxlen is not None else {}),
        }
        data.update({key: section() for key, section in self.extra.items()})
        # rewritten every few seconds while running: compact then, indented for people at the end
        write_json_atomic(self.path, data, indent=2 if finished else None)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


__all__ = [
    "DEFAULT_MODEL",
    "InputError",
    "Progress",
    "RunResult",
    "StageModels",
    "WatchOptions",
    "output_stem",
    "stage_models",
    "watch",
]
