"""`streampii watch --blur`: one decode pass feeds the sampler and the redactor; detector tracks
join the event log; the VLM's boxes are masked too, on frames held until its windows are done."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from streampii.analyzers import Finding, TimedBox, WindowResult
from streampii.gate import GateOptions
from streampii.pipeline import WatchOptions, watch
from streampii.redactor import RedactOptions
from streampii.sampler import SamplerOptions
from streampii.sinks import event_schema
from streampii.windows import Window, WindowOptions
from tests.redact_clip import audio_packets, decode_rgb, make_clip, sharpness


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("walk") / "walk.mp4", seconds=3.0)


@pytest.mark.parametrize("vlm", ["auto", "off"])
def test_without_a_vlm_the_detectors_alone_log_faces_and_plates(walk, tmp_path: Path, vlm: str) -> None:
    """--vlm auto on a machine with no GPU and no weights: the detectors look at every frame and
    their tracks are the log (no video without --blur); --vlm off asks for no analysis at all."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "streampii", "watch", str(walk.path), "--out", str(out), "--vlm", vlm]
        + ["--window", "2", "--stride", "2", "--fps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "walk.manifest.json").read_text())
    events = [json.loads(line) for line in (out / "walk.events.jsonl").read_text().splitlines()]
    assert manifest["analyzers"] == [] and manifest["state"] == "complete"
    assert not (out / "walk.redacted.mp4").exists() and "redacted" not in manifest["outputs"]
    if vlm == "off":
        assert events == [] and "detectors" not in manifest and "detectors_alone" not in manifest["settings"]
        return
    assert "the detectors alone (face, plate) look at every frame" in result.stderr
    assert manifest["settings"]["detectors_alone"] is True and manifest["settings"]["redact"]["detect"] == [
        "face",
        "plate",
    ]
    detectors = manifest["detectors"]
    assert detectors["frames_decoded"] == walk.frames and detectors["detector_runs"]["centerface"] > 0
    assert set(detectors["detector_region_runs"]) <= {"centerface"}  # PP-OCR reads whole frames
    for event in events:
        jsonschema.validate(event, event_schema())
    assert {e["category"] for e in events} >= {"face", "license_plate"}
    face = next(e for e in events if e["category"] == "face")
    assert face["detector"] == "centerface" and face["start"] < 0.2 and face["end"] > 2.7 and face["boxes"]
    assert manifest["counts"]["events"] == len(events) == detectors["tracks"]


def test_cli_blur_writes_redacted_video_and_detector_events(walk, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streampii", "watch", str(walk.path), "--out", str(tmp_path), "--vlm", "off"]
        + ["--blur", "--detect", "face,plate", "--window", "2", "--stride", "2", "--fps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "walk.manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["outputs"]["redacted"] == "walk.redacted.mp4"
    assert manifest["settings"]["redact"]["detect"] == ["face", "plate"]
    # one decode pass: every decoded frame went to the redactor, and each was written once
    redaction = manifest["redaction"]
    assert redaction["frames_decoded"] == manifest["counts"]["frames_decoded"] == walk.frames
    assert redaction["frames_written"] == walk.frames and redaction["audio_streams"] == 1
    assert {"detect", "encode", "decode"} <= set(manifest["timings"]["stages"])
    events = [json.loads(line) for line in (tmp_path / "walk.events.jsonl").read_text().splitlines()]
    schema = event_schema()
    for event in events:
        jsonschema.validate(event, schema)
    assert {e["category"] for e in events} >= {"face", "license_plate"}
    face = next(e for e in events if e["category"] == "face")
    assert face["detector"] == "centerface" and face["start"] < 0.2 and face["end"] > 2.7 and face["boxes"]
    before, _ = decode_rgb(walk.path)
    after, _ = decode_rgb(tmp_path / "walk.redacted.mp4")
    assert len(after) == len(before)
    for i in (0, len(before) // 2, len(before) - 1):
        x1, y1, x2, y2 = walk.boxes[i]["face"]
        w, h = x2 - x1, y2 - y1
        box = (x1 + w // 10, y1 + h // 10, x2 - w // 10, y2 - h // 10)  # an ellipse mask leaves the corners
        assert sharpness(after[i], box) < 0.1 * sharpness(before[i], box)
    assert audio_packets(tmp_path / "walk.redacted.mp4")


class BoxAnalyzer:
    """A stand-in VLM: reports an ID card at a fixed box on the frames of every window."""

    name = "fake-vlm"
    box = (300.0, 40.0, 420.0, 120.0)

    def __init__(self) -> None:
        self.windows: list[int] = []

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        results = []
        for window in windows:
            self.windows.append(window.index)
            boxes = [TimedBox(f.t, self.box) for f in window.frames]
            finding = Finding("id_document", window.start, window.end, boxes=boxes, detector=self.name)
            results.append(WindowResult(window, [finding], self.name))
        return results

    def describe(self) -> dict:
        return {"analyzer": self.name}


def test_vlm_boxes_are_masked_on_every_frame(walk, tmp_path: Path) -> None:
    options = WatchOptions(
        out=tmp_path,
        sampler=SamplerOptions(fps=4),
        windows=WindowOptions(window=1.0, stride=0.5),
        blur=True,
        gate=GateOptions(mode="off"),
        redact=RedactOptions(detect=(), margin=0.3, mode="fill", shape="rect"),
    )
    analyzer = BoxAnalyzer()
    result = watch(str(walk.path), options, [analyzer])
    assert result.state == "complete" and analyzer.windows
    before, _ = decode_rgb(walk.path)
    after, _ = decode_rgb(tmp_path / "walk.redacted.mp4")
    assert len(after) == len(before)
    x1, y1, x2, y2 = (int(v) for v in BoxAnalyzer.box)
    inner = (x1 + 12, y1 + 8, x2 - 12, y2 - 8)
    for i in range(len(before)):  # filled black on every frame, also between the sampled ones
        assert after[i][inner[1] : inner[3], inner[0] : inner[2]].mean() < 20, f"frame {i} not masked"
    # outside every mask the picture is untouched (up to re-encoding)
    far = (10, 200, 120, 260)
    assert np.abs(after[5][200:260, 10:120].astype(int) - before[5][200:260, 10:120]).mean() < 4
    assert sharpness(after[5], far) > 0.5 * sharpness(before[5], far)
    events = [json.loads(line) for line in (tmp_path / "walk.events.jsonl").read_text().splitlines()]
    assert [e["category"] for e in events] == ["id_document"]


def test_blur_on_a_live_url_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streampii", "watch", "rtsp://user:secret@127.0.0.1:9/cam", "--blur", "--vlm", "off"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2  # a usage error: a service restarting on failure must not loop on it
    assert "--blur" in result.stderr and "secret" not in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.manifest.json"))


def test_segments_with_blur_are_done_once(walk, tmp_path: Path) -> None:
    """--blur redoes a killed input from the start, but a finished one is recorded as done."""
    import shutil

    folder = tmp_path / "rec"
    folder.mkdir()
    shutil.copy(walk.path, folder / "cam1_20261125T101500Z.mp4")
    command = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(tmp_path / "out")]
    command += ["--blur", "--detect", "face", "--vlm", "off", "--settle", "0"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "out" / "cam1_20261125T101500Z.redacted.mp4").is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "event(s)" not in second.stderr  # nothing new to do


def test_frames_wait_for_the_vlm_at_most_max_hold(walk, tmp_path: Path) -> None:
    from streampii.redactor import Redactor
    from streampii.source import decode_video, describe, open_video

    with open_video(str(walk.path)) as container:
        info = describe(container, str(walk.path))
        redactor = Redactor(info, tmp_path / "held.mp4", RedactOptions(detect=(), max_hold=1.0))
        redactor.release(0.0)  # the VLM has analysed nothing yet
        most = 0
        for frame in decode_video(container, info):
            redactor.push(frame)
            most = max(most, redactor.buffered)
        report = redactor.finish()
    assert most <= walk.fps * 1.0 + 2  # about one second of frames, not the whole clip
    assert report.frames_written == walk.frames


class FrameKeeper:
    """A stand-in VLM that keeps a copy of every frame it is shown."""

    name = "keeper"

    def __init__(self) -> None:
        self.frames: dict[float, np.ndarray] = {}

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        for window in windows:
            self.frames.update((f.t, f.image.copy()) for f in window.frames)
        return [WindowResult(window, [], self.name) for window in windows]

    def describe(self) -> dict:
        return {"analyzer": self.name}


def test_the_vlm_is_shown_frames_before_they_are_masked(walk, tmp_path: Path) -> None:
    """The redactor masks decoded frames in place: the sampler must have taken each one first,
    also with the shortest look-ahead and no waiting for the VLM."""
    redact = RedactOptions(
        detect=("face",), margin=0.0, detect_interval=0.0, static_threshold=0, max_hold=0.0, mode="fill", shape="rect"
    )
    shown = {}
    for blur in (False, True):
        keeper = FrameKeeper()
        options = WatchOptions(
            out=tmp_path / f"blur-{blur}",
            sampler=SamplerOptions(fps=5),  # at 24 fps, some ticks take the frame before them
            windows=WindowOptions(window=1.0, stride=1.0),
            blur=blur,
            gate=GateOptions(mode="off"),
            redact=redact,
        )
        assert watch(str(walk.path), options, [keeper]).state == "complete"
        shown[blur] = keeper.frames
    assert len(shown[True]) >= 14 and shown[True].keys() == shown[False].keys()
    for t, image in shown[False].items():
        assert np.array_equal(shown[True][t], image), f"the VLM was shown the frame at {t} s masked"
    after, _ = decode_rgb(tmp_path / "blur-True" / "walk.redacted.mp4")
    x1, y1, x2, y2 = walk.boxes[10]["face"]
    assert after[10][y1 + 10 : y2 - 10, x1 + 10 : x2 - 10].mean() < 20  # and the output is masked


def test_decoded_frames_are_written_a_burst_at_a_time(walk, tmp_path: Path, monkeypatch) -> None:
    """Decoding, the redactor's checks and x264 each work on a burst of frames in a row, not in
    turn at every frame (their data evicted one another's from the caches); the frames held stay
    within the look-ahead and one burst."""
    from streampii import pipeline
    from streampii.redactor import Redactor

    assert [pipeline.read_ahead(w, h) for w, h in ((1280, 720), (1920, 1080), (3840, 2160))] == [16, 8, 8]
    pushed_before_write, most = [], [0]
    write_ready = Redactor.write_ready

    def counted(self) -> None:
        pushed_before_write.append(self.report.frames)
        most[0] = max(most[0], self.buffered)
        write_ready(self)

    monkeypatch.setattr(Redactor, "write_ready", counted)
    options = WatchOptions(out=tmp_path, blur=True, gate=GateOptions(mode="off"), redact=RedactOptions(detect=()))
    assert watch(str(walk.path), options, []).state == "complete"
    burst = pipeline.read_ahead(walk.width, walk.height)
    assert pushed_before_write[:3] == [burst, 2 * burst, 3 * burst]
    assert most[0] <= burst + (0.5 + 2 / walk.fps) * walk.fps + 1  # one burst and the margin's look-ahead
    _, pts = decode_rgb(tmp_path / "walk.redacted.mp4")
    assert len(pts) == walk.frames


def test_opencv_works_on_the_calling_thread(walk, tmp_path: Path) -> None:
    """OpenCV's pool would split masks, resizes and the detectors' pre-processing across a worker
    that spins between calls: CPU on a thread no stage timer sees."""
    cv2.setNumThreads(2)
    options = WatchOptions(out=tmp_path, blur=True, gate=GateOptions(mode="off"), redact=RedactOptions(detect=()))
    assert watch(str(walk.path), options, []).state == "complete"
    assert cv2.getNumThreads() == 1


@pytest.mark.parametrize(("cpus", "blur", "ffmpeg_threads"), [(2, True, False), (16, True, True), (2, False, True)])
def test_every_frame_is_decoded_on_this_thread_where_the_cores_are_few(
    walk, tmp_path: Path, monkeypatch, cpus: int, blur: bool, ffmpeg_threads: bool
) -> None:
    """Frame threads decode the same frames for 20-55% more CPU: where every frame is decoded for
    the redactor on an input's 2 CPUs, FFmpeg decodes on the pipeline's thread; with more cores to
    spare, or a sampler that needs few frames, it keeps its own threads."""
    from streampii import pipeline

    started = []
    real = pipeline.decode_video

    def decode(*args, **kwargs):  # (the codec's threads start on its first frame)
        before = _av_threads()
        for n, frame in enumerate(real(*args, **kwargs)):
            if n == 0:
                started.append(_av_threads() - before)
            yield frame

    monkeypatch.setattr(pipeline, "decode_video", decode)
    monkeypatch.setattr(pipeline, "can_split", lambda *args: False)  # one decoder, not chunk workers
    options = WatchOptions(out=tmp_path, vlm="off", blur=blur, cpus=cpus, redact=RedactOptions(detect=()))
    assert watch(str(walk.path), options, []).state == "complete"
    assert bool(started[0]) == ffmpeg_threads


def _av_threads() -> set[str]:
    """Ids of this process's threads that FFmpeg named (``av:h264:df0``...), as the manifest's
    decoder-thread count finds them."""
    from streampii.timing import _thread_ids, _thread_name

    return {tid for tid in _thread_ids() if _thread_name(tid).startswith("av:")}


@pytest.mark.parametrize(("command", "jobs"), [("watch", 1), ("watch", 2), ("segments", 1)])
def test_a_commands_inputs_share_their_detectors(walk, tmp_path: Path, monkeypatch, command: str, jobs: int) -> None:
    """The detectors are built once for a command's inputs (a set for each input running at once),
    not for every input: a service working through short segments paid about 0.4 CPU s a segment
    for new ones. Reused, they find what fresh ones find."""
    import shutil

    from typer.testing import CliRunner

    from streampii import cli, pipeline

    built = []
    real = pipeline.build_detectors
    monkeypatch.setattr(pipeline, "build_detectors", lambda options: built.append(options) or real(options))
    folder, out = tmp_path / "rec", tmp_path / "out"
    folder.mkdir()
    inputs = [shutil.copy(walk.path, folder / f"cam1_20261125T10{15 + i}00Z.mp4") for i in range(3)]
    args = ["--out", str(out), "--vlm", "off", "--blur", "--detect", "face"]
    if command == "watch":
        args = ["watch", *map(str, inputs), *args, "--no-resume", "--jobs", str(jobs)]
    else:
        args = ["segments", str(folder), *args, "--settle", "0"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert 1 <= len(built) <= jobs
    logs = [(out / f"{Path(p).stem}.events.jsonl").read_text().splitlines() for p in inputs]
    spans = [[(e["category"], e["start"], e["end"]) for e in map(json.loads, log)] for log in logs]
    assert spans[0] and spans[0] == spans[1] == spans[2]


def test_a_video_that_cannot_be_written_ends_its_input_alone(walk, tmp_path: Path, monkeypatch) -> None:
    """A failure while writing one input's redacted video (here the muxer refusing an audio codec
    that got past the test) ends that input with one line, its manifest failed; the others go on."""
    from typer.testing import CliRunner
    from videos import write_with_audio

    from streampii import cli, writer

    monkeypatch.setattr(writer, "mp4_takes", lambda stream, packet: True)
    write_with_audio(tmp_path / "dashcam.avi", "pcm_u8")
    out = tmp_path / "out"
    args = ["watch", str(tmp_path / "dashcam.avi"), str(walk.path), "--out", str(out), "--vlm", "off", "--blur"]
    result = CliRunner().invoke(cli.app, [*args, "--detect", "face"])
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)  # the exit code: no traceback
    line = "dashcam.avi: cannot write dashcam.redacted.mp4: ValueError: 'mp4' format does not support 'pcm_u8' codec"
    assert line in result.output
    failed = json.loads((out / "dashcam.manifest.json").read_text())
    assert failed["state"] == "failed" and failed["error"].startswith("cannot write") and failed["finished_at"]
    assert not (out / "dashcam.redacted.mp4").exists()
    assert json.loads((out / "walk.manifest.json").read_text())["state"] == "complete"
    assert (out / "walk.redacted.mp4").is_file()


@pytest.mark.parametrize("broken", [False, True])
def test_a_segment_whose_video_fails_is_reported_once_and_the_next_one_is_done(
    walk, tmp_path: Path, monkeypatch, broken: bool
) -> None:
    """A segment with audio MP4 cannot hold is redacted (its audio encoded to AAC); where writing
    fails all the same, the segment is failed once (not retried at every run) and the next one done."""
    import shutil

    from typer.testing import CliRunner
    from videos import write_with_audio

    from streampii import cli, writer

    if broken:
        monkeypatch.setattr(writer, "mp4_takes", lambda stream, packet: True)
    folder, out = tmp_path / "rec", tmp_path / "out"
    folder.mkdir()
    write_with_audio(folder / "cam1_20261125T101500Z.avi", "pcm_u8")
    shutil.copy(walk.path, folder / "cam1_20261125T101600Z.mp4")
    args = ["segments", str(folder), "--out", str(out), "--vlm", "off", "--blur", "--detect", "face", "--settle", "0"]
    first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == (3 if broken else 0), first.output
    assert (out / "cam1_20261125T101600Z.redacted.mp4").is_file()
    assert (out / "cam1_20261125T101500Z.redacted.mp4").is_file() != broken
    states = [json.loads((out / f"cam1_20261125T10{m}00Z.manifest.json").read_text())["state"] for m in (15, 16)]
    assert states == ["failed" if broken else "complete", "complete"]
    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "event(s)" not in again.output and "error" not in again.output


def test_a_killed_blur_run_leaves_no_unplayable_file_under_the_final_name(tmp_path: Path) -> None:
    """The video is written as <name>.partial and renamed when it is closed: SIGKILL leaves the
    partial file only; a rerun redoes the input over it, and a stopped run (SIGINT) closes its
    shorter video cleanly under the final name."""
    import contextlib
    import signal
    import time

    from videos import write_video

    source = write_video(tmp_path / "long.mp4", [i / 25 for i in range(500)], audio_seconds=20.0)
    out = tmp_path / "out"
    final, partial = out / "long.redacted.mp4", out / "long.redacted.mp4.partial"
    command = [sys.executable, "-m", "streampii", "watch", str(source), "--out", str(out), "--vlm", "off"]
    command += ["--blur", "--detect", "face", "--window", "1", "--stride", "1", "--fps", "2"]

    def writing() -> bool:  # this run's partial file, not the killed run's (marked below)
        with contextlib.suppress(FileNotFoundError):
            return partial.stat().st_size != len(b"killed")
        return False

    def run_until_partial(sig: int) -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not writing() and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        return proc

    run_until_partial(signal.SIGKILL)
    assert partial.is_file() and not final.exists()
    assert json.loads((out / "long.manifest.json").read_text())["state"] == "running"
    partial.write_bytes(b"killed")
    stopped = run_until_partial(signal.SIGINT)
    assert stopped.returncode == 3, stopped.stderr.read()
    assert json.loads((out / "long.manifest.json").read_text())["state"] == "interrupted"
    assert not partial.exists() and 0 < len(decode_rgb(final)[0]) < 500


def test_clips_leave_no_partial_files(walk, tmp_path: Path) -> None:
    """Stale partial files of a killed run are removed when the input is redone with --clips."""
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / "walk.redacted.mp4.partial", out / "walk.redacted.clip007.mp4.partial"]
    for path in stale:
        path.write_bytes(b"unfinished")
    options = WatchOptions(out=out, blur=True, gate=GateOptions(mode="off"), redact=RedactOptions(clips=True))
    assert watch(str(walk.path), options, []).state == "complete"
    assert sorted(p.name for p in out.glob("walk.redacted*")) == ["walk.redacted.clip001.mp4"]


@pytest.mark.parametrize("visible", [(1.0, 1.5), None])
def test_the_manifest_names_the_clips_written_and_nothing_else(tmp_path: Path, visible) -> None:
    """--clips writes <stem>.redacted.clipNNN.mp4 files: the manifest's outputs list those, and
    no <stem>.redacted.mp4, which is not written; a clip with no PII has no video at all."""
    clip = make_clip(tmp_path / "gap.mp4", seconds=3.0, fps=12, plate=False, face=visible is not None, visible=visible)
    out = tmp_path / "out"
    redact = RedactOptions(detect=("face",), clips=True, padding=0.25, margin=0.25)
    assert watch(str(clip.path), WatchOptions(out=out, blur=True, redact=redact), []).state == "complete"
    manifest = json.loads((out / "gap.manifest.json").read_text())
    written = sorted(p.name for p in out.glob("gap.redacted*"))
    assert written == (["gap.redacted.clip001.mp4"] if visible else [])
    expected = {"events": "gap.events.jsonl", "manifest": "gap.manifest.json"}
    assert manifest["outputs"] == ({**expected, "clips": written} if visible else expected)
