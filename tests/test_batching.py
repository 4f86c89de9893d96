"""Windows of several inputs share VLM calls (SharedBatcher), and `watch --jobs` runs inputs at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from live_helpers import NO_GATE, BrightnessAnalyzer, brightness_draw
from qwen_helpers import make_window
from videos import write_video

from streampii.analyzers import WindowResult
from streampii.analyzers.batching import SharedBatcher
from streampii.pipeline import WatchOptions, watch
from streampii.sampler import SamplerOptions
from streampii.state import RunState
from streampii.windows import Window, WindowOptions


class Recorder:
    name = "recorder"

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        self.calls.append([w.index for w in windows])
        self.threads.add(threading.get_ident())
        if self.fail_on is not None and any(w.index == self.fail_on for w in windows):
            raise RuntimeError("model failed")
        return [WindowResult(w, [], self.name) for w in windows]

    def describe(self) -> dict:
        return {"analyzer": self.name}


def run_inputs(batcher: SharedBatcher, inputs: list[list[Window]]) -> dict[int, list]:
    got: dict[int, list] = {}
    barrier = threading.Barrier(len(inputs))

    def worker(n: int, windows: list[Window]) -> None:
        with batcher.attached():
            barrier.wait()
            got[n] = []
            for window in windows:
                try:
                    got[n].extend(batcher.analyze([window]))
                except RuntimeError as exc:
                    got[n].append(exc)

    threads = [threading.Thread(target=worker, args=(n, w)) for n, w in enumerate(inputs)]
    for t in threads:
        t.start()

    def close_when_done() -> None:
        for t in threads:
            t.join(30)
        batcher.close()

    threading.Thread(target=close_when_done).start()
    batcher.serve()  # the model calls run on this thread, as the CLI's run on its main thread
    return got


def test_windows_of_concurrent_inputs_share_calls_and_results_go_back_to_their_input() -> None:
    recorder = Recorder()
    batcher = SharedBatcher(recorder, batch_size=4, max_wait=5.0)
    inputs = [[make_window([0.0, 1.0], index=100 * n + k) for k in range(3)] for n in range(4)]
    got = run_inputs(batcher, inputs)
    for n, windows in enumerate(inputs):
        assert [r.window for r in got[n]] == windows  # each input gets its own results, in order
    assert max(len(call) for call in recorder.calls) == 4  # windows of four inputs in one call
    assert len(recorder.calls) == 3 and batcher.windows == 12


def test_every_call_runs_on_the_serving_thread() -> None:
    """CUDA graphs (--kv-cache static) must be replayed on the thread that recorded them."""
    recorder = Recorder()
    run_inputs(
        SharedBatcher(recorder, batch_size=2, max_wait=0.1), [[make_window([0.0, 1.0], index=k)] for k in range(5)]
    )
    assert recorder.threads == {threading.get_ident()} and sum(map(len, recorder.calls)) == 5


def test_a_second_ctrl_c_hands_every_waiting_window_back_unanswered() -> None:
    """Their pipelines then record them as failed, see the stop and write their manifests."""

    class Interrupted(Recorder):
        def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
            raise KeyboardInterrupt

    batcher = SharedBatcher(Interrupted(), batch_size=1, max_wait=0.0)
    got: list[WindowResult] = []

    def worker(k: int) -> None:
        with batcher.attached():
            got.extend(batcher.analyze([make_window([0.0, 1.0], index=k)]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    with pytest.raises(KeyboardInterrupt):
        batcher.serve()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)  # none waits for a call that will never come
    assert sorted(r.window.index for r in got) == [0, 1, 2]
    assert {r.error for r in got} == {"interrupted before the model answered"}


def test_windows_a_second_ctrl_c_left_unanswered_are_analysed_on_resume(tmp_path: Path) -> None:
    """watch --jobs: a second Ctrl-C hands the windows waiting for the model back unanswered. The run
    stops before them: they were counted as failed and checkpointed as done, so a resumed run never
    analysed them."""
    video = write_video(tmp_path / "v.mp4", [i / 5 for i in range(100)], draw=brightness_draw())
    options = WatchOptions(
        out=tmp_path / "full", sampler=SamplerOptions(fps=2.0), windows=WindowOptions(window=2.0, stride=1.0),
        gate=NO_GATE,
    )  # fmt: skip
    watch(str(video), options, [BrightnessAnalyzer()])
    stop = threading.Event()

    class SecondCtrlC(BrightnessAnalyzer):
        def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
            if any(w.index == 6 for w in windows):
                stop.set()  # the first Ctrl-C; the second comes while the model works on window 6
                raise KeyboardInterrupt
            return super().analyze(windows)

    options = replace(options, out=tmp_path / "resumed")
    batcher = SharedBatcher(SecondCtrlC(), batch_size=1, max_wait=0.0)
    stopped: list = []

    def run_input() -> None:
        with RunState(options.out) as state, batcher.attached():
            stopped.append(watch(str(video), options, [batcher], state=state, stop=stop))

    thread = threading.Thread(target=run_input)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        batcher.serve()
    thread.join(30)
    assert stopped[0].state == "interrupted" and (stopped[0].windows, stopped[0].windows_failed) == (6, 0)

    seen: list[int] = []

    class Counting(BrightnessAnalyzer):
        def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
            seen.extend(w.index for w in windows)
            return super().analyze(windows)

    with RunState(options.out) as state:
        assert watch(str(video), options, [Counting()], state=state).state == "complete"
    assert min(seen) == 6  # windows 0..5 were done; 6 was not
    full, resumed = (json.loads((tmp_path / d / "v.manifest.json").read_text())["counts"] for d in ("full", "resumed"))
    assert resumed.pop("windows_resumed") == 6 and full.pop("windows_resumed") == 0
    assert resumed == full
    assert (tmp_path / "resumed" / "v.events.jsonl").read_bytes() == (tmp_path / "full" / "v.events.jsonl").read_bytes()


def test_a_lone_input_is_not_kept_waiting_for_others() -> None:
    recorder = Recorder()
    batcher = SharedBatcher(recorder, batch_size=8, max_wait=30.0)
    got = run_inputs(batcher, [[make_window([0.0, 1.0], index=k) for k in range(3)]])
    assert len(got[0]) == 3 and recorder.calls == [[0], [1], [2]]


def test_a_model_error_reaches_only_the_callers_of_that_call() -> None:
    batcher = SharedBatcher(Recorder(fail_on=1), batch_size=1, max_wait=0.0)
    got = run_inputs(batcher, [[make_window([0.0, 1.0], index=k) for k in range(3)]])
    assert [type(r).__name__ for r in got[0]] == ["WindowResult", "RuntimeError", "WindowResult"]


def test_cli_jobs_runs_inputs_at_once(clips: dict[str, Path], tmp_path: Path) -> None:
    a = shutil.copy(clips["intel_face-demographics-walking-and-pause"], tmp_path / "a.mp4")
    b = shutil.copy(clips["intel_face-demographics-walking-and-pause"], tmp_path / "b.mp4")
    missing = tmp_path / "missing.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "streampii", "watch", a, str(missing), b, "--jobs", "2", "--vlm", "off", "--json"]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr  # partial: the missing input failed, the others completed
    assert "missing.mp4: no such file" in result.stderr
    for stem in ("a", "b"):
        manifest = json.loads((tmp_path / "out" / f"{stem}.manifest.json").read_text())
        assert manifest["state"] == "complete"


@pytest.mark.parametrize("jobs", ["0", "-1", "257"])
def test_jobs_must_be_positive(jobs: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streampii", "watch", "x.mp4", "--jobs", jobs], capture_output=True, text=True
    )
    assert result.returncode == 2


def test_default_batch_size_batches_files_on_a_gpu_only() -> None:
    from streampii.pipeline import GPU_BATCH, default_batch_size

    assert default_batch_size("cuda", live=False, blur=False) == default_batch_size("cuda:1", False, False) == GPU_BATCH
    assert default_batch_size("cuda", live=True, blur=False) == 1  # a camera's events are not held for a batch
    assert default_batch_size("cuda", live=False, blur=True) == 1  # frames wait at most 12 s for the VLM's boxes
    assert default_batch_size("cpu", live=False, blur=False) == 1  # on a CPU a batch costs what its windows do


@pytest.mark.parametrize(
    ("device", "args", "analyzer_batch", "input_batch"),
    [("cuda", [], 8, 8), ("cpu", [], 1, 1), ("cuda", ["--batch-size", "3"], 3, 3), ("cuda", ["--jobs", "2"], 8, 8)],
)
def test_watch_resolves_the_batch_size_on_the_analyzers_device(
    clips: dict[str, Path], tmp_path: Path, monkeypatch, device: str, args: list, analyzer_batch: int, input_batch: int
) -> None:
    from typer.testing import CliRunner

    from streampii import cli

    recorder = Recorder()
    recorder.device, recorder.batch_size = device, 1
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([recorder], None))
    clip = str(clips["intel_car-detection"])  # 30 s: 5 windows
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["watch", clip, "--out", str(out), "--gate", "off", "--no-resume", *args])
    assert result.exit_code == 0, result.output
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    assert manifest["settings"]["batch_size"] == input_batch  # windows the input gathers per call
    assert recorder.batch_size == analyzer_batch
    assert manifest["counts"]["windows_total"] == 5
    assert [len(call) for call in recorder.calls] == {1: [1] * 5, 3: [3, 2], 8: [5]}[input_batch]
    assert recorder.threads == {threading.get_ident()}  # with --jobs too: calls on the main thread


@pytest.mark.parametrize(
    ("device", "source", "warmed"), [("cuda", "rtsp", True), ("cpu", "rtsp", False), ("cuda", "file", False)]
)
def test_watch_warms_the_model_up_before_a_camera_opens_on_a_gpu(
    clips: dict[str, Path], tmp_path: Path, monkeypatch, device: str, source: str, warmed: bool
) -> None:
    """A camera's frames arrive in real time: the model's first calls (CUDA's start-up, a static
    cache's compiles) are made before it is opened, with the window size the settings give."""
    from typer.testing import CliRunner

    from streampii import cli, pipeline
    from streampii.sampler import SamplerOptions
    from streampii.windows import WindowOptions

    order = []
    recorder = Recorder()
    recorder.device, recorder.batch_size = device, 1
    recorder.warm_up = lambda frames, max_pixels: order.append(("warm_up", frames, max_pixels)) or 1.5
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([recorder], None))
    opened = pipeline.LiveSource.open
    monkeypatch.setattr(pipeline.LiveSource, "open", lambda self: order.append("open") or opened(self))
    url = "rtsp://127.0.0.1:9/none"  # nothing listens: the camera fails to open, after the warm-up
    args = [url, "--timeout", "1"] if source == "rtsp" else [str(clips["intel_car-detection"])]
    result = CliRunner().invoke(cli.app, ["watch", *args, "--out", str(tmp_path), "--no-resume", "--gate", "off"])
    assert result.exit_code == (1 if source == "rtsp" else 0), result.output
    frames = WindowOptions().frame_counts(SamplerOptions().fps)[0]
    warm = [("warm_up", frames, SamplerOptions().max_pixels)] if warmed else []
    assert order == warm + (["open"] if source == "rtsp" else [])


def test_a_failed_warm_up_is_a_warning_and_the_camera_still_opens(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from streampii import cli, pipeline

    order = []
    recorder = Recorder()
    recorder.device, recorder.batch_size = "cuda", 1

    def warm_up(frames: int, max_pixels: int) -> float:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    recorder.warm_up = warm_up
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([recorder], None))
    opened = pipeline.LiveSource.open
    monkeypatch.setattr(pipeline.LiveSource, "open", lambda self: order.append("open") or opened(self))
    args = ["watch", "rtsp://127.0.0.1:9/none", "--timeout", "1", "--out", str(tmp_path), "--no-resume"]
    result = CliRunner().invoke(cli.app, args)
    assert "warning: warm-up failed (RuntimeError: CUDA error: an illegal memory access" in result.output
    assert order == ["open"] and result.exit_code == 1  # the camera's own failure, as without a warm-up


def test_a_camera_does_not_keep_the_files_after_it_from_starting(tmp_path: Path) -> None:
    """A camera has no end: at --jobs 1 the file after it never started, and a stop ended the run
    with exit 0 and no word of it. Each camera now has a worker of its own beside the files'."""
    import os
    import signal
    import time

    from live_helpers import HERE, RtspServer, gst_rtsp_available

    if not gst_rtsp_available() and not os.environ.get("STREAMPII_REQUIRE_RTSP"):
        pytest.skip("GStreamer RTSP server not installed")
    from videos import write_video

    clip = write_video(tmp_path / "clip.mp4", [i / 5 for i in range(15)])
    out = tmp_path / "out"
    server = RtspServer("--pattern", "white").start()
    try:
        cmd = [sys.executable, "-m", "streampii", "watch", server.url(), str(clip), "--vlm", "off", "--out", str(out)]
        proc = subprocess.Popen(
            [*cmd, "--timeout", "5"], stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(HERE)}
        )
        manifest, started = out / "clip.manifest.json", time.monotonic()
        # the file done, and the camera's frames coming (as in test_rtsp's SIGTERM test)
        while time.monotonic() < started + 60 and not (manifest.exists() and '"complete"' in manifest.read_text()):
            time.sleep(0.5)
        time.sleep(max(0.0, started + 6 - time.monotonic()))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        server.stop()
    assert json.loads(manifest.read_text())["state"] == "complete", stderr
    assert proc.returncode == 0, stderr


def test_inputs_a_stop_came_before_are_named_and_the_run_is_partial(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner
    from videos import write_video

    from streampii import cli
    from streampii.pipeline import RunResult

    flags = []

    class Flag(cli.StopFlag):
        def __init__(self) -> None:
            super().__init__()
            flags.append(self)

    def stopped_during(source, *args, **kwargs) -> RunResult:
        flags[0].set("SIGTERM")  # the first input is stopped: the second never starts
        return RunResult(source, "interrupted")

    monkeypatch.setattr(cli, "StopFlag", Flag)
    monkeypatch.setattr(cli, "_watch_one", stopped_during)
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([], "no VLM here"))
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / name, [i / 5 for i in range(5)])
    result = CliRunner().invoke(cli.app, ["watch", "a.mp4", "b.mp4", "--vlm", "off", "--out", "out"])
    assert result.exit_code == 3, result.output
    assert "b.mp4: not started (stopped first)" in result.output
