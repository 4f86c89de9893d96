"""The command line: parses options, runs the pipeline per input, reports. Nothing more."""

from __future__ import annotations

import gc
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from streampii import __version__
from streampii.analyzers.batching import SharedBatcher
from streampii.chunks import cpu_share, default_workers
from streampii.cli_options import (
    VLM,
    BatchSize,
    Blur,
    Detect,
    Device,
    Fps,
    Gate,
    GateMode,
    KVCache,
    KvCacheChoice,
    MaskMode,
    MaskShape,
    MaxPixels,
    Model,
    Stride,
    VlmChoice,
    WindowSeconds,
)
from streampii.detectors import DETECT_KINDS
from streampii.errors import AnalyzerError, InputError
from streampii.gate import GateOptions
from streampii.pipeline import (
    DEFAULT_MODEL,
    MAX_BATCH,
    RunResult,
    WatchOptions,
    default_batch_size,
    output_stem,
    stage_models,
    watch,
)
from streampii.redactor import RedactOptions
from streampii.rtsp import LiveOptions, StopFlag, connecting, is_live, stop_on_signals
from streampii.sampler import SamplerOptions
from streampii.source import expand_inputs, redact_url
from streampii.state import STATE_FILE, RunState, input_key
from streampii.windows import WindowOptions
from streampii.writer import X264_PRESETS

# torch's idle OpenMP threads sleep instead of spinning for the next operation, where they took CPU
# from the decoder, onnxruntime and x264 (docs/performance.md); read when torch loads, which is later
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="streampii",
    help="Find personal data in video (faces, plates, names, documents...), log it with timestamps, and blur it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# Exit codes a scheduler can tell apart.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _version(value: bool) -> None:
    if value:
        print(f"streampii {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """streampii: personal data in video, found, logged and blurred."""
    _log_warnings()


class _WarningLines(logging.Handler):
    """The library's log warnings (a window's unusable answer, a camera's drop) as this command's
    own warning lines on stderr, not as bare text from Python's last-resort handler."""

    def emit(self, record: logging.LogRecord) -> None:
        _warn(record.getMessage())


def _log_warnings() -> None:
    logger = logging.getLogger("streampii")
    if not any(isinstance(h, _WarningLines) for h in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))
        logger.propagate = False


@app.command("watch")
def watch_command(
    inputs: Annotated[list[str], typer.Argument(help="Video files, folders of videos, or rtsp:// URLs.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <stem>.events.jsonl, .manifest.json, .redacted.mp4.")
    ] = Path("streampii-out"),
    fps: Fps = 1.0,
    max_pixels: MaxPixels = 360 * 420,
    window: WindowSeconds = 8.0,
    stride: Stride = 6.0,
    vlm: VlmChoice = VLM.auto,
    model: Model = DEFAULT_MODEL,
    device: Device = "auto",
    batch_size: BatchSize = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=16,
            help="Longest VLM answer per window, in tokens, up to 32768 (a dozen findings fit in 512).",
            rich_help_panel="VLM",
        ),
    ] = 512,
    kv_cache: KvCacheChoice = KVCache.dynamic,
    blur: Blur = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print each event to stdout as a JSON line as soon as it is final.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue where a killed run stopped (state in --out).")
    ] = True,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Also record the stream into segment files in this folder (each <name>.mp4.partial until finished).",
            rich_help_panel="Live cameras (rtsp://)",
        ),
    ] = None,
    segment_seconds: Annotated[
        float,
        typer.Option(help="Length of each recorded segment file, seconds.", rich_help_panel="Live cameras (rtsp://)"),
    ] = 300.0,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait when connecting or reading.", rich_help_panel="Live cameras (rtsp://)"),
    ] = 10.0,
    detect: Detect = "face,plate",
    mode: Annotated[MaskMode, typer.Option(help="How a box is obscured.", rich_help_panel="Blur")] = MaskMode.blur,
    mask_shape: Annotated[
        MaskShape, typer.Option(help="Face masks (text and plates are rectangles).", rich_help_panel="Blur")
    ] = (MaskShape.ellipse),
    mask_scale: Annotated[
        float, typer.Option(help="Grow each box by this factor (at most 10) before masking.", rich_help_panel="Blur")
    ] = 1.3,
    face_threshold: Annotated[
        float, typer.Option(help="CenterFace score threshold, 0..1 (lower finds more).", rich_help_panel="Blur")
    ] = 0.2,
    text_threshold: Annotated[
        float, typer.Option(help="PP-OCR text box score threshold, 0..1.", rich_help_panel="Blur")
    ] = 0.5,
    detect_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between face detections, at most 2; tracks fill the frames between.", rich_help_panel="Blur"
        ),
    ] = RedactOptions.detect_interval,
    clips: Annotated[
        bool,
        typer.Option("--clips", help="Write only the stretches around PII, one file each.", rich_help_panel="Blur"),
    ] = False,
    crf: Annotated[int, typer.Option(help="H.264 quality (0 lossless .. 51 worst).", rich_help_panel="Blur")] = 20,
    preset: Annotated[
        str, typer.Option(help=f"X264 speed preset: {', '.join(X264_PRESETS)}.", rich_help_panel="Blur")
    ] = "veryfast",
    gate: Gate = GateMode.detect,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_BATCH,
            help="Files processed at once (each camera runs beside them); their VLM windows are batched together.",
            rich_help_panel="VLM",
        ),
    ] = 1,
) -> None:
    """Analyse videos and write a timestamped log of the personal data they show."""
    try:
        options = WatchOptions(
            out=out_dir,
            sampler=SamplerOptions(fps=fps, max_pixels=max_pixels),
            windows=WindowOptions(window=window, stride=stride),
            vlm=vlm.value,
            model=model,
            device=device,
            batch_size=batch_size or 1,
            max_new_tokens=max_new_tokens,
            kv_cache=kv_cache.value,
            blur=blur,
            gate=GateOptions(mode=gate.value),
            redact=RedactOptions(
                detect=detect,
                mode=mode.value,
                shape=mask_shape.value,
                mask_scale=mask_scale,
                face_threshold=face_threshold,
                text_threshold=text_threshold,
                detect_interval=detect_interval,
                clips=clips,
                crf=crf,
                preset=preset,
            ),
        )
        live = LiveOptions(
            open_timeout=timeout, read_timeout=timeout, record_dir=record, segment_seconds=segment_seconds
        )
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    if json_out and sys.stdout is None:  # started with no stdout at all (`>&-`): the lines have nowhere to go
        _error("--json: stdout is closed")
        raise typer.Exit(EXIT_USAGE)
    if clips and not blur:  # it would write nothing, silently
        _error("--clips writes the blurred video's stretches around PII: it needs --blur")
        raise typer.Exit(EXIT_USAGE)
    cameras = [i for i in inputs if is_live(i)]
    if blur and cameras:  # a usage error: a service that restarts on failure must not loop on it
        _error(f"--blur works on files, not on a live camera ({cameras[0]}): --record it and blur the segments")
        raise typer.Exit(EXIT_USAGE)
    _make_folder("--out", out_dir)
    if record is not None:
        _make_folder("--record", record)
    analyzers, note = _build_analyzers(options)
    options = _detectors_alone(options, analyzers)
    sources = expand_inputs(inputs, out_dir)
    # (--no-resume too: no input takes another's outputs; after the model: one that cannot load
    # leaves nothing written)
    with _open_state(out_dir) as state:
        stems = _unique_stems([s for s in sources if isinstance(s, str)], state)
        if not resume:  # their logs are written anew: a later resume must not continue a killed run in them
            for source, stem in stems.items():
                state.drop_checkpoint(input_key(source, stem))
    device = _analyzer_device(analyzers)
    live_inputs = any(is_live(s) for s in sources if isinstance(s, str))
    jobs = _workers(jobs, [s for s in sources if isinstance(s, str)])
    if batch_size is None:  # per input as default_batch_size says; inputs side by side share calls on a GPU
        per_input = default_batch_size(device, live_inputs, blur)
        shared_batch = max(per_input, jobs) if device.startswith("cuda") else 1
    else:
        per_input, shared_batch = max(1, batch_size // jobs), batch_size
    options = _with_batch_size(options, analyzers, shared_batch)
    if live_inputs and device.startswith("cuda") and hasattr(analyzers[0], "warm_up"):
        _warm_up(analyzers[0], options)
    # Ctrl-C / SIGTERM: finish the current window, write everything final, skip the rest
    stop = StopFlag()
    shared = None
    if jobs > 1 and analyzers:  # one model for every input: their windows share generate calls
        shared = SharedBatcher(analyzers[0], shared_batch)
        analyzers = [shared]
        options = replace(options, batch_size=per_input)
    if jobs > 1:  # inputs side by side share the CPUs that one input's chunk decoders would use
        options = replace(options, decode_workers=default_workers(jobs), cpus=cpu_share(jobs))
    outcomes: dict[int, RunResult | InputError] = {}
    json_lock = threading.Lock()
    models = stage_models(options)  # detectors and gates built once, not for every input

    def run_one(n: int, source: str, bar: Progress) -> None:
        if stop.is_set():
            return
        # one state connection per thread: SQLite connections must not cross threads
        state = RunState(out_dir) if resume else None
        try:
            with shared.attached() if shared else nullcontext():
                outcomes[n] = _watch_one(source, options, analyzers, note, stems[source], json_out, json_lock, bar,
                                         stop=stop, state=state, live=live, models=models)  # fmt: skip
        except InputError as exc:
            outcomes[n] = exc
            _error(str(exc))
        except Exception as exc:  # a bug of ours: this input fails, the others go on
            outcomes[n] = internal_error(source, exc)
            _error(str(outcomes[n]))
        finally:
            if state is not None:
                state.close()

    with stop_on_signals(stop), _progress() as bar:
        for source in sources:
            if isinstance(source, InputError):
                _error(str(source))
        # cameras first: each has a worker of its own from the start (_workers)
        todo = [(n, s) for n, s in enumerate(sources) if isinstance(s, str)]
        todo.sort(key=lambda item: not is_live(item[1]))
        try:
            if jobs > 1:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="streampii-input") as pool:
                    futures = [pool.submit(run_one, n, s, bar) for n, s in todo]
                    if shared is not None:  # the model calls run here, on the main thread, until every input is done
                        closer = threading.Thread(target=lambda: (wait(futures), shared.close()), daemon=True)
                        closer.start()
                        shared.serve()
                    for future in futures:
                        future.result()
            else:
                for n, source in todo:
                    run_one(n, source, bar)
        except KeyboardInterrupt:
            err.print("streampii: interrupted")
            raise typer.Exit(130) from None
    results = [outcomes[n] for n in sorted(outcomes) if isinstance(outcomes[n], RunResult)]
    failures = sum(isinstance(s, InputError) for s in sources) + sum(
        isinstance(o, InputError) for o in outcomes.values()
    )
    for n, source in todo:
        if n not in outcomes:  # a stop came before its turn
            _warn(f"{redact_url(source)}: not started (stopped first)")
            failures += 1
    for result in results:
        if result.state != "complete" or result.error:
            _warn(f"{result.source}: {result.error or result.state}")
    if results:
        # every input has a row: those that failed at once (no manifest) and those never started too
        rows = [
            outcomes.get(n) if isinstance(outcomes.get(n), RunResult) else _failed_row(source, outcomes.get(n))
            for n, source in enumerate(sources)
        ]
        (err if json_out else out).print(_summary(rows, options))
    incomplete = failures + sum(r.state != "complete" or r.error is not None for r in results)
    if incomplete == 0:
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_FAILED if incomplete == len(sources) and not results else EXIT_PARTIAL)


def _workers(jobs: int, sources: list[str]) -> int:
    """Inputs run at once: ``jobs`` files, beside a worker for each camera. A camera has no end:
    sharing a worker with the inputs after it, it would keep them from ever starting."""
    cameras = sum(is_live(s) for s in sources)
    if not cameras:
        return jobs
    return cameras + min(jobs, len(sources) - cameras)


def _progress() -> Progress:
    """One progress display for the whole run: a bar per input (video seconds done / total)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[position]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
        # rich routes what is written to stdout while the bar shows through its console, which is
        # stderr: `--json | jq` in a terminal got no line. A piped stdout keeps its lines; stdout on
        # the terminal too prints them above the bar.
        redirect_stdout=sys.stdout is not None and sys.stdout.isatty(),
    )


def _watch_one(
    source: str,
    options: WatchOptions,
    analyzers,
    note,
    stem: str,
    json_out: bool,
    json_lock: threading.Lock,
    bar: Progress,
    **more: object,
) -> RunResult:
    shown = redact_url(source)
    task = bar.add_task(Path(shown).name if "://" not in shown else shown, total=None, position="", rate="")
    started = time.monotonic()

    def on_progress(p) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        bar.update(
            task,
            completed=p.done,
            total=p.total,
            position=f"{p.done:.0f}/{p.total:.0f} s" if p.total else f"{p.done:.0f} s",
            rate=f"{p.windows / elapsed:.2f} windows/s",
        )

    def on_event(record: dict) -> None:
        if json_out:
            with json_lock:  # whole lines, even with --jobs
                _print_json(record, more["stop"])

    try:
        return watch(
            source, options, analyzers, analyzer_note=note, stem=stem, on_progress=on_progress, on_event=on_event,
            **more,
        )  # fmt: skip
    finally:
        bar.remove_task(task)


def _print_json(record: dict, stop: StopFlag) -> None:
    """One event on stdout as a JSON line. A reader that went away (``--json | head -1``) stops the
    run as Ctrl-C does: the event is in the log already, and stdout is not the output folder."""
    try:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # later lines, and the interpreter's last flush, go nowhere instead of failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if not stop.is_set():
            _warn("stdout was closed: stopping as on Ctrl-C (what is done so far is in --out)")
        stop.set("stdout closed")


def _analyzer_device(analyzers: list) -> str:
    return getattr(analyzers[0], "device", "cpu") if analyzers else "cpu"


def _detectors_alone(options: WatchOptions, analyzers: list) -> WatchOptions:
    """``--vlm auto`` found no VLM: the detectors run alone on every frame, for their events, so
    that an audit on a machine without a GPU does not end with an empty log. Where no VLM runs and
    ``--detect`` names nothing, nothing would look at the video: a usage error."""
    if not analyzers and not options.redact.detect and (options.blur or options.vlm == "auto"):
        why = "nothing would be masked" if options.blur else "the log would stay empty"
        _error(f"--detect must name at least one of {', '.join(DETECT_KINDS)} where no VLM runs: {why}")
        raise typer.Exit(EXIT_USAGE)
    if analyzers or options.vlm != "auto" or options.blur:
        return options
    kinds = ", ".join(options.redact.detect)
    _warn(f"the detectors alone ({kinds}) look at every frame: the log holds those kinds only (--vlm off: no analysis)")
    return replace(options, detectors_alone=True)


def _warm_up(analyzer, options: WatchOptions) -> None:
    """The model's first calls, made before any camera opens (CUDA's start-up, a static cache's
    compiles): a camera's frames arrive in real time, and those that wait are dropped."""
    frames = options.windows.frame_counts(options.sampler.fps)[0]
    err.print(f"streampii: warming up {analyzer.name} on {analyzer.device} before the cameras open ...")
    try:
        seconds = analyzer.warm_up(frames, options.sampler.max_pixels)
    except Exception as exc:  # not fatal: the windows meet the same fault and are reported failed
        _warn(f"warm-up failed ({type(exc).__name__}: {exc}); the first windows will pay for the start-up")
        return
    err.print(f"streampii: warmed up in {seconds:.1f} s")


def _with_batch_size(options: WatchOptions, analyzers: list, batch_size: int) -> WatchOptions:
    """``options`` and the loaded analyzers set to ``batch_size`` windows per generate call."""
    for analyzer in analyzers:
        analyzer.batch_size = batch_size
    return replace(options, batch_size=batch_size)


def _build_analyzers(options: WatchOptions) -> tuple[list, str | None]:
    if options.vlm == "off":
        return [], "VLM disabled (--vlm off)"
    try:
        from streampii.analyzers.qwen import load_qwen2vl, vlm_available
    except ImportError as exc:  # the VLM extra is not installed
        if options.vlm == "qwen2-vl":
            _error(f"--vlm qwen2-vl: cannot import the Qwen2-VL analyzer ({exc})")
            raise typer.Exit(EXIT_FAILED) from None
        return [], f"Qwen2-VL analyzer unavailable ({exc})"
    if options.vlm == "auto":
        ok, reason = vlm_available(options.model, options.device)
        if not ok:
            _warn(f"running without the VLM: {reason}")
            return [], reason
    try:
        analyzer = load_qwen2vl(
            options.model,
            options.device,
            batch_size=options.batch_size,
            max_new_tokens=options.max_new_tokens,
            kv_cache=options.kv_cache,
        )
        # torch, transformers and the model are millions of objects that live to the end: keep the
        # cyclic GC from walking them again in each full collection (0.3 s each, measured)
        gc.freeze()
        return [analyzer], None
    except AnalyzerError as exc:
        if options.vlm == "auto":
            _warn(f"running without the VLM: {exc}")
            return [], str(exc)
        _error(f"{options.model}: {exc}")
        raise typer.Exit(EXIT_FAILED) from None


def _unique_stems(sources: list[str], state: RunState | None = None) -> dict[str, str]:
    """An output stem for each source (distinct: ``expand_inputs`` keeps an input once). With the
    ``--out`` folder's state, a source keeps the stem an earlier run gave it, and a new one takes
    none that another source holds there: d1/x.mp4 and d2/x.mp4 keep x and x-2 whichever runs
    alone later, instead of the later one overwriting x.*."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for source in sources:
        recorded = state.stem_of(source) if state is not None else None
        if recorded is not None and recorded not in used:
            stem = recorded
        else:
            stem = base = output_stem(source)
            n = 2
            while stem in used or (state is not None and state.stem_taken(stem, source)):
                stem, n = f"{base}-{n}", n + 1
        used.add(stem)
        stems[source] = stem
    return stems


def _failed_row(source: str | InputError, outcome: InputError | None) -> RunResult:
    """A summary row for an input with no result: it failed (``InputError``) or never started."""
    error = source if isinstance(source, InputError) else outcome
    name = error.source if error is not None else redact_url(source)
    return RunResult(name, "failed" if error is not None else "not started", error=error and error.reason)


def _summary(results: list[RunResult], options: WatchOptions) -> Table:
    table = Table(title=f"streampii: {len(results)} input(s) -> {options.out}")
    table.add_column("input", overflow="fold")
    for column in ("state", "duration", "windows", "failed", "events", "by category"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            Path(r.source).name if "://" not in r.source else r.source,
            r.state,
            f"{r.duration:.1f} s" if r.duration else "-",
            str(r.windows),
            str(r.windows_failed),
            str(r.events),
            ", ".join(f"{k} {v}" for k, v in sorted(r.by_category.items())) or "-",
        )
    return table


def _make_folder(option: str, folder: Path) -> None:
    """Create ``folder`` now, so that a path that cannot be one ends the command with a usage error
    before any input is read or any model is loaded."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        reason = "not a folder (a file of that name exists)"
    except OSError as exc:
        reason = f"cannot create the folder ({exc.strerror or exc})"
    else:
        if os.access(folder, os.W_OK | os.X_OK):
            return
        reason = "cannot write in the folder (permission denied)"
    _error(f"{option} {folder}: {reason}")
    raise typer.Exit(EXIT_USAGE)


def internal_error(source: str, exc: Exception) -> InputError:
    """A bug of ours met on ``source``, as that input's failure: its traceback goes to stderr now,
    for a report; the error line is the caller's to print."""
    sys.stderr.write(redact_url("".join(traceback.format_exception(exc))))
    reason = f"internal error: {type(exc).__name__}: {exc} (a bug in streampii: please report it, with the traceback)"
    return InputError(redact_url(source), reason)


def _open_state(out_dir: Path) -> RunState:
    """The ``--out`` folder's resume state: a file there that is no SQLite database, or one SQLite
    cannot open or write, ends the command with one line before any input is read."""
    try:
        return RunState(out_dir)
    except sqlite3.Error as exc:
        _error(f"--out {out_dir}: cannot use its state file {STATE_FILE} ({exc})")
        raise typer.Exit(EXIT_FAILED) from None


def _error(message: str) -> None:
    err.print(f"streampii: error: {redact_url(message)}", markup=False, soft_wrap=True)


def _warn(message: str) -> None:
    err.print(f"streampii: warning: {redact_url(message)}", markup=False, soft_wrap=True)


def run() -> None:
    """The ``streampii`` command: ``app``, then out. Where a camera's connection attempt was given up
    at a stop and is still waiting inside FFmpeg, the process leaves without Python's finalization:
    PyAV's timeout check takes the GIL from that thread, and doing so while the interpreter was
    being torn down crashed the process (SIGSEGV in place of the exit code, once in CI)."""
    try:
        app(prog_name="streampii")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if connecting():
        if isinstance(code, str):  # (as sys.exit does with a message)
            print(code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)
    sys.exit(code)


# `streampii segments DIR`: lives in segments.py, registered here so that `streampii --help` lists it
from streampii.segments import segments_command  # noqa: E402

app.command("segments")(segments_command)
