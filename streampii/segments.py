"""Segment folders: process every finished segment a recorder dropped in a folder, once, in time order.

Recorders (ffmpeg's segment muxer with ``-strftime 1``, NVRs) write fixed-length files named
by their start time, e.g. ``cam1_20261125T101500.mp4``. A segment is finished when a later
segment of the same camera exists (the recorder closes a file before it opens the next) or
when it has not changed for ``settle`` seconds; a file still being written is never read
half-way. Which segments are done lives in the output folder's state database, so a
scheduled run (cron, systemd timer) picks up exactly the new ones.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import av
import typer

from streampii import cli_options as opts
from streampii.errors import InputError, OutputFolderError, check_range
from streampii.pipeline import DEFAULT_MODEL, WatchOptions, default_batch_size, output_stem, stage_models
from streampii.pipeline import watch as watch_input
from streampii.source import VIDEO_SUFFIXES, is_own_output, name_error
from streampii.state import RunState, fingerprint, input_key

# With --watch a run goes on for weeks: it returns (and its summary lists) the latest runs alone
WATCH_RUNS = 600
# Date and time inside a name: 20261125T101500, 20261125_101500, 20261125101500,
# 2026-11-25T10-15-00, 2026-11-25_10:15:00..., optionally followed by Z or +0100 / +01:00.
_STAMP = re.compile(
    r"(?P<Y>(?:19|20)\d\d)-?(?P<m>[01]\d)-?(?P<d>[0-3]\d)[T_ -]?"
    r"(?P<H>[0-2]\d)[-:.]?(?P<M>[0-5]\d)[-:.]?(?P<S>[0-5]\d)"
    r"(?P<tz>Z|[+-]\d\d:?\d\d)?"
)


@dataclass(frozen=True)
class Segment:
    path: Path
    start: float | None  # UNIX time of the segment's first frame, when the name or metadata says
    camera: str  # the name without its time stamp: segments of one camera share it
    start_from: str | None  # "name" or "metadata"

    @property
    def name(self) -> str:
        return self.path.name

    def extra(self) -> dict:
        """Keys every event of this segment carries."""
        return {"segment": self.name}


def name_time(name: str, local: bool = True) -> float | None:
    """UNIX time written in a file name. A stamp without a zone is local time, as ffmpeg's
    ``-strftime 1`` writes it (``local=False`` reads it as UTC)."""
    match = _STAMP.search(name)
    if match is None:
        return None
    try:
        moment = datetime(*(int(match[k]) for k in ("Y", "m", "d", "H", "M", "S")))
    except ValueError:
        return None
    zone = match["tz"]
    if zone == "Z":
        return moment.replace(tzinfo=UTC).timestamp()
    if zone:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=timezone(sign * offset)).timestamp()
    return moment.timestamp() if local else moment.replace(tzinfo=UTC).timestamp()


def metadata_time(path: Path) -> float | None:
    """``creation_time`` from the container (UTC by convention), if the file has one."""
    try:
        with av.open(str(path)) as container:
            stamps = [container.metadata.get("creation_time")]
            stamps += [s.metadata.get("creation_time") for s in container.streams.video[:1]]
    except (av.error.FFmpegError, OSError):
        return None
    for stamp in stamps:
        if stamp:
            try:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


def describe_segment(path: Path, local: bool = True, read_metadata: bool = True) -> Segment:
    start = name_time(path.name, local)
    source = "name" if start is not None else None
    if start is None and read_metadata:
        start = metadata_time(path)
        source = "metadata" if start is not None else None
    camera = _STAMP.sub("", path.stem).strip("_-. ") or "segment"
    return Segment(path=path, start=start, camera=camera, start_from=source)


def list_segments(folder: Path, local: bool = True, out: Path | None = None) -> list[Segment]:
    """Every video in ``folder`` (not recursive) but this tool's own outputs in ``out``, oldest
    first: by the time in the name, else by modification time; the name breaks ties. Metadata is
    read later, for finished files only."""
    files = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not is_own_output(p, out)
    ]
    segments = [describe_segment(p, local, read_metadata=False) for p in files]
    return sorted(segments, key=lambda s: (s.start if s.start is not None else s.path.stat().st_mtime, s.name))


def finished(segments: Sequence[Segment], settle: float, now: float | None = None) -> list[Segment]:
    """The segments that are safe to read: a later segment of the same camera exists, or the
    file has not been modified for ``settle`` seconds. An empty file (a recorder may create it
    before it writes) waits by the same rules; once finished, it is read and reported as a bad
    input, not waited on forever."""
    now = time.time() if now is None else now
    later_exists: set[Path] = set()
    seen: dict[str, Segment] = {}
    for segment in reversed(segments):
        if segment.camera in seen:
            later_exists.add(segment.path)
        seen[segment.camera] = segment
    ready = []
    for segment in segments:
        try:
            stat = segment.path.stat()
        except FileNotFoundError:  # deleted by the recorder's retention meanwhile
            continue
        if segment.path in later_exists or now - stat.st_mtime >= settle:
            ready.append(segment)
    return ready


def segment_stem(state: RunState, path: Path) -> str:
    """The output stem of a segment: the one it is recorded under in ``state``, else the first
    of ``stem``, ``stem-2``... that no other segment is recorded under (``cam.mkv`` beside
    ``cam.mp4``). Kept in the state, a name never changes between runs, and so neither does
    the segment's key: it is not done again, nor its outputs given to another segment."""
    source = str(path)
    base = output_stem(source)
    if state.status(input_key(source, base)) is not None:  # the common case, one look-up
        return base
    recorded = state.stem_of(source) or _take_over_typed_path(state, path)
    if recorded is not None:
        return recorded
    stem, n = base, 2
    while state.stem_taken(stem, source):
        stem, n = f"{base}-{n}", n + 1
    return stem


def file_fingerprint(path: Path) -> str:
    """The segment file alone (size, modification time), not the settings: a segment that
    failed is tried again once this changed (a copy completed), and only then."""
    return fingerprint(str(path), {})


def _take_over_typed_path(state: RunState, path: Path) -> str | None:
    """Until 0.1.0 a segment was recorded under its path as typed (``rec/cam1.mp4``,
    ``../rec/cam1.mp4``): a row of this segment so recorded is moved to its resolved ``path``
    (its stem, status and checkpoint with it), so that it is neither done again nor given a
    ``-2`` name. A relative path's working folder is unknown: it names this segment when its
    folders (less leading ``..``) end ``path``'s."""
    for key in state.keys_of_file(path.name):
        stem, _, typed = key.partition("|")
        recorded = Path(typed)
        if recorded.is_absolute():
            same = recorded.resolve() == path
        else:
            parts = tuple(p for p in Path(os.path.normpath(typed)).parts if p != "..")
            same = path.parts[-len(parts) :] == parts
        if same:
            state.rename(key, input_key(str(path), stem))
            return stem
    return None


@dataclass
class SegmentRun:
    """What happened to one segment."""

    segment: Segment
    result: object | None = None  # pipeline.RunResult
    error: str | None = None
    gone: bool = False  # deleted or renamed before it was read (a recorder's retention): not a failure


def check_scan(settle: float, poll: float) -> None:
    """``ValueError`` unless ``settle`` and ``poll`` are seconds a folder scan can work with."""
    check_range("--settle", settle, 0, 86400, unit=" s")
    check_range("--poll", poll, 0, 3600, above=True, unit=" s")


def process_folder(
    folder: Path,
    process: Callable[[Segment], object],
    is_done: Callable[[Segment], bool],
    *,
    watch: bool = False,
    settle: float = 10.0,
    poll: float = 2.0,
    local: bool = True,
    stop: threading.Event | None = None,
    on_segment: Callable[[SegmentRun], None] | None = None,
    out: Path | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[SegmentRun]:
    """Run ``process`` on every finished segment not yet done, oldest first; with ``watch``,
    keep polling for new segments until ``stop`` is set. ``InputError`` from one segment is
    recorded and the others go on (from a segment deleted or renamed since the scan: ``gone``).
    ``out``: the output folder, whose own videos are skipped. With ``watch``, a folder that
    disappears (an unmounted share, a recorder recreating it) is waited for: ``on_warning`` hears
    of it once each time it goes, and only the latest ``WATCH_RUNS`` runs are returned (each went
    to ``on_segment``)."""
    check_scan(settle, poll)
    if not folder.is_dir():
        raise InputError(str(folder), "no such folder")
    # one spelling of each segment's path (cron's absolute, a person's relative one): its key in the state
    folder = folder.resolve()
    runs: deque[SegmentRun] = deque(maxlen=WATCH_RUNS if watch else None)
    # segments tried or found done, by file version: neither is looked at again in this run unless its file
    # changed (a failed one is not retried; a done one costs no state look-up at every scan)
    attempted: dict[Path, str] = {}
    missing = False  # the folder could not be read at the last scan
    while True:
        try:
            listed = list_segments(folder, local, out)
            # (files a recorder's retention deleted are forgotten: a --watch run sees every file of weeks)
            attempted = {segment.path: attempted[segment.path] for segment in listed if segment.path in attempted}
            ready = finished(listed, settle)
            missing = False
        except OSError as exc:
            if not watch:
                raise
            if not missing and on_warning is not None:
                on_warning(f"{folder}: cannot be read ({exc.strerror or exc}); waiting for it to come back")
            missing, ready = True, []
        for segment in ready:
            if stop is not None and stop.is_set():
                return list(runs)
            version = file_fingerprint(segment.path)
            if attempted.get(segment.path) == version:
                continue
            attempted[segment.path] = version
            error = name_error(str(segment.path))
            if error is not None:  # (the state cannot even be asked about it)
                run = SegmentRun(segment, error=str(error))
                runs.append(run)
                if on_segment is not None:
                    on_segment(run)
                continue
            if is_done(segment):
                continue
            if segment.start is None:
                segment = describe_segment(segment.path, local)
            run = SegmentRun(segment)
            try:
                run.result = process(segment)
            except InputError as exc:
                if segment.path.exists():
                    run.error = str(exc)
                else:
                    run.gone = True
            runs.append(run)
            if on_segment is not None:
                on_segment(run)
        if not watch or (stop is not None and stop.wait(poll)) or (stop is None and time.sleep(poll)):
            return list(runs)


def _unfinished(result) -> bool:
    """A segment's run that did not end well: neither complete nor interrupted (a segment stopped
    by SIGTERM / Ctrl-C is no failure: it stays resumable, its row left running), or complete with
    an error (windows the VLM gave no answer for)."""
    return result.state not in ("complete", "interrupted") or (result.state == "complete" and result.error is not None)


def segments_command(
    folder: Annotated[Path, typer.Argument(help="Folder a recorder writes segment files into.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for each segment's events, manifest, and the state database.")
    ] = Path("streampii-out"),
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep running: process new segments as they are finished (Ctrl-C ends).")
    ] = False,
    settle: Annotated[
        float, typer.Option(help="Seconds a segment must stay unchanged to count as finished (if none follows it).")
    ] = 10.0,
    poll: Annotated[float, typer.Option(help="Seconds between folder scans with --watch.")] = 2.0,
    utc: Annotated[
        bool, typer.Option("--utc", help="Times in segment names are UTC (default: local time, as ffmpeg writes).")
    ] = False,
    fps: opts.Fps = 1.0,
    max_pixels: opts.MaxPixels = 360 * 420,
    window: opts.WindowSeconds = 8.0,
    stride: opts.Stride = 6.0,
    vlm: opts.VlmChoice = opts.VLM.auto,
    model: opts.Model = DEFAULT_MODEL,
    device: opts.Device = "auto",
    batch_size: opts.BatchSize = None,
    kv_cache: opts.KvCacheChoice = opts.KVCache.dynamic,
    gate: opts.Gate = opts.GateMode.detect,
    blur: opts.Blur = False,
    detect: opts.Detect = "face,plate",
) -> None:
    """Process every finished segment in FOLDER once, oldest first (resumable; --watch for new ones)."""
    from streampii import cli
    from streampii.gate import GateOptions
    from streampii.redactor import RedactOptions
    from streampii.rtsp import StopFlag, stop_on_signals
    from streampii.sampler import SamplerOptions
    from streampii.windows import WindowOptions

    if not folder.is_dir():
        cli._error(f"{folder}: no such folder")
        raise typer.Exit(cli.EXIT_USAGE)
    try:
        check_scan(settle, poll)
        options = WatchOptions(
            out=out_dir,
            sampler=SamplerOptions(fps=fps, max_pixels=max_pixels),
            windows=WindowOptions(window=window, stride=stride),
            vlm=vlm.value,
            model=model,
            device=device,
            batch_size=batch_size or 1,
            kv_cache=kv_cache.value,
            gate=GateOptions(mode=gate.value),
            blur=blur,
            redact=RedactOptions(detect=detect),
        )
    except ValueError as exc:
        cli._error(str(exc))
        raise typer.Exit(cli.EXIT_USAGE) from None
    cli._make_folder("--out", out_dir)
    analyzers, note = cli._build_analyzers(options)
    options = cli._detectors_alone(options, analyzers)
    if batch_size is None:  # segments are files: batched on a GPU
        batch = default_batch_size(cli._analyzer_device(analyzers), live=False, blur=blur)
        options = cli._with_batch_size(options, analyzers, batch)
    stop = StopFlag()
    models = stage_models(options)  # detectors and gates built once, not for every segment
    # (opened after the model: one that cannot load leaves nothing written)
    with cli._open_state(out_dir) as state, stop_on_signals(stop):

        def key(segment: Segment) -> str:
            return input_key(str(segment.path), segment_stem(state, segment.path))

        def is_done(segment: Segment) -> bool:
            row = state.get(key(segment))
            if row is None or row.status in ("running", "interrupted"):
                return False
            return row.status != "failed" or row.fingerprint == file_fingerprint(segment.path)

        def process(segment: Segment):
            try:
                return watch_input(
                    str(segment.path),
                    options,
                    analyzers,
                    analyzer_note=note,
                    stem=segment_stem(state, segment.path),
                    stop=stop,
                    state=state,
                    extra=segment.extra(),
                    wall_start=segment.start,
                    models=models,
                )
            except Exception as exc:
                # a bug of ours met on one segment fails it alone: a service restarted on the crash
                # would meet it again, and never reach the later segments
                error = exc if isinstance(exc, InputError) else cli.internal_error(str(segment.path), exc)
                # (deleted meanwhile: nothing to record, process_folder skips it; the output folder at
                # fault, a full disk: the next run tries it again)
                if segment.path.exists() and not isinstance(error, OutputFolderError):
                    # a broken file is reported once, not every run: again only once the file changed
                    state.mark(key(segment), "failed", error.reason, file_fingerprint(segment.path))
                raise error from None

        bad: set[Path] = set()  # segments whose last try failed (a later try may still succeed)
        good = 0  # segments done well: never tried again

        def report(run: SegmentRun) -> None:
            nonlocal good
            if not run.gone:
                if run.error or (run.result is not None and _unfinished(run.result)):
                    bad.add(run.segment.path)
                else:
                    good += 1
                    bad.discard(run.segment.path)
            if run.gone:
                cli.err.print(f"streampii: {run.segment.name}: deleted or renamed before its turn", markup=False)
            elif run.error:
                cli._error(run.error)
            elif run.result is not None and run.result.state == "interrupted":  # only a requested stop does that
                cli.err.print(
                    f"streampii: {run.segment.name}: stopped ({stop.reason}), the next run takes it up", markup=False
                )
            elif run.result is not None and (run.result.state != "complete" or run.result.error):
                cli._warn(f"{run.segment.name}: {run.result.error or run.result.state}")
            else:
                cli.err.print(f"streampii: {run.segment.name}: {run.result.events} event(s)", markup=False)

        runs = process_folder(
            folder,
            process,
            is_done,
            watch=watch,
            settle=settle,
            poll=poll,
            local=not utc,
            stop=stop,
            on_segment=report,
            out=out_dir,
            on_warning=cli._warn,
        )
    results = [r.result for r in runs if r.result is not None]
    if results:
        cli.err.print(cli._summary(results, options))
    # how each segment ended (tried again once its file changed: the last try); one deleted before its turn: none
    if not bad:
        raise typer.Exit(cli.EXIT_OK)
    raise typer.Exit(cli.EXIT_FAILED if not good else cli.EXIT_PARTIAL)
