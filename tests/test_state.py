"""Resumable state: checkpoints, log rewind, and real runs killed with SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from live_helpers import HERE, NO_GATE, BrightnessAnalyzer, brightness_draw
from videos import write_video

from streampii.analyzers import Finding, TimedBox
from streampii.events import Event, EventMerger
from streampii.pipeline import WatchOptions, watch
from streampii.sampler import SamplerOptions
from streampii.state import (
    RunState,
    event_from_state,
    event_to_state,
    fingerprint,
    input_key,
    merger_restore,
    merger_snapshot,
    rewind_log,
)
from streampii.windows import WindowOptions


def test_checkpoint_roundtrip_and_fingerprint(tmp_path: Path) -> None:
    state = RunState(tmp_path)
    assert state.begin("a", "fp1") is None
    state.checkpoint("a", 3, 7.5, 120, [{"x": 1}], {"events": 2})
    cp = state.begin("a", "fp1")
    assert (cp.window, cp.t, cp.log_offset, cp.open_events, cp.data) == (3, 7.5, 120, [{"x": 1}], {"events": 2})
    assert state.begin("a", "fp2") is None  # the input or the settings changed: start over
    state.finish("a", "complete", 10)
    assert state.status("a") == "complete" and "a" in state.finished_keys()
    state.close()
    assert RunState(tmp_path).status("a") == "complete"  # persisted


def test_fingerprint_follows_file_and_settings(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    first = fingerprint(str(video), {"fps": 1})
    assert fingerprint(str(video), {"fps": 2}) != first
    video.write_bytes(b"y" * 11)
    assert fingerprint(str(video), {"fps": 1}) != first


def test_input_key_hides_credentials() -> None:
    assert "secret" not in input_key("rtsp://admin:secret@cam/1", "cam")


def test_rewind_log(tmp_path: Path) -> None:
    log = tmp_path / "e.jsonl"
    log.write_text("one\ntwo\nthree\n")
    state = RunState(tmp_path)
    state.begin("k", "f")
    state.checkpoint("k", 1, None, 8, [])
    assert rewind_log(log, state.get("k")) is True
    assert log.read_text() == "one\ntwo\n"
    state.checkpoint("k", 1, None, 100, [])
    assert rewind_log(log, state.get("k")) is False  # log shorter than promised: start over


def test_open_events_survive_serialization() -> None:
    event = Event(
        "face",
        1.0,
        2.5,
        "src",
        value="x",
        confidence=0.9,
        boxes=[TimedBox(1.0, (1, 2, 3, 4))],
        wall_start=1e9,
        wall_end=1e9 + 1.5,
        extra={"segment": "a.mp4"},
    )
    assert event_from_state(json.loads(json.dumps(event_to_state(event)))) == event
    merger = EventMerger("src", gap=1.0)
    merger.add([Finding("text", 0.0, 1.0, value="abc")], now=0.0)
    other = EventMerger("src", gap=1.0)
    merger_restore(other, merger_snapshot(merger))
    later = [Finding("text", 1.5, 2.0, value="abc")]
    assert [e.to_dict() for e in other.add(later, now=9.0)] == [e.to_dict() for e in merger.add(later, now=9.0)]


class TokenAnalyzer(BrightnessAnalyzer):
    """Visual tokens for every window, and every fourth window failed, as a VLM's may be."""

    def analyze(self, windows):
        results = super().analyze(windows)
        for r in results:
            r.visual_tokens = 100 + r.window.index
            r.error = "unreadable answer" if r.window.index % 4 == 3 else None
        return results


def test_resume_skips_done_windows(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", [i / 5 for i in range(150)], draw=brightness_draw())
    options = WatchOptions(
        out=tmp_path / "full",
        sampler=SamplerOptions(fps=2.0),
        windows=WindowOptions(window=2.0, stride=1.0),
        gate=NO_GATE,
    )
    watch(str(video), options, [TokenAnalyzer()])
    expected = (tmp_path / "full" / "v.events.jsonl").read_bytes()
    assert expected.count(b"\n") >= 4

    class Stopper(TokenAnalyzer):
        calls = 0

        def analyze(self, windows):
            Stopper.calls += len(windows)
            if Stopper.calls == 12:
                raise KeyboardInterrupt  # dies mid-run, like a kill: no clean-up code runs after
            return super().analyze(windows)

    out = tmp_path / "resumed"
    options = WatchOptions(out=out, sampler=options.sampler, windows=options.windows, gate=NO_GATE)
    with RunState(out) as state, pytest.raises(KeyboardInterrupt):
        watch(str(video), options, [Stopper()], state=state)
    counting = TokenAnalyzer()
    seen: list[int] = []
    original = counting.analyze
    counting.analyze = lambda ws: (seen.extend(w.index for w in ws), original(ws))[1]
    with RunState(out) as state:
        result = watch(str(video), options, [counting], state=state)
        assert state.status(input_key(str(video), "v")) == "complete"
    assert result.state == "complete"
    assert min(seen) == 11  # windows 0..10 were done and are not analysed again
    assert (out / "v.events.jsonl").read_bytes() == expected
    manifest = json.loads((out / "v.manifest.json").read_text())
    assert manifest["counts"]["events"] == expected.count(b"\n")
    # the killed run's windows count as they ended, as in an uninterrupted run
    counts = manifest["counts"]
    uninterrupted = json.loads((tmp_path / "full" / "v.manifest.json").read_text())["counts"]
    assert (counts.pop("windows_resumed"), uninterrupted.pop("windows_resumed")) == (11, 0)
    assert counts == uninterrupted


def test_a_run_aborted_by_a_second_ctrl_c_leaves_a_manifest_that_says_so(tmp_path: Path) -> None:
    """A manifest left "running" would tell an audit that the input is still at work."""
    from streampii.pipeline import ABORTED

    video = write_video(tmp_path / "v.mp4", [i / 5 for i in range(150)], draw=brightness_draw())

    class Aborted(BrightnessAnalyzer):
        def analyze(self, windows):
            if any(w.index == 3 for w in windows):
                raise KeyboardInterrupt
            return super().analyze(windows)

    options = WatchOptions(out=tmp_path / "out", sampler=SamplerOptions(fps=2.0), gate=NO_GATE)
    with pytest.raises(KeyboardInterrupt):
        watch(str(video), options, [Aborted()])
    manifest = json.loads((tmp_path / "out" / "v.manifest.json").read_text())
    assert (manifest["state"], manifest["error"]) == ("interrupted", ABORTED)
    assert manifest["finished_at"] is not None and manifest["counts"]["windows_total"] == 3


def test_sigkill_at_random_points_gives_the_same_log(tmp_path: Path) -> None:
    """A real run killed with SIGKILL at random moments, restarted each time, ends with the
    byte-identical event log of an uninterrupted run."""
    video = write_video(tmp_path / "cam.mp4", [i / 5 for i in range(300)], draw=brightness_draw())
    script = [sys.executable, str(HERE / "live_helpers.py"), str(video)]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    clean = subprocess.run([*script, str(tmp_path / "clean")], env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    expected = (tmp_path / "clean" / "cam.events.jsonl").read_bytes()
    assert expected.count(b"\n") >= 8

    rng = random.Random(4)
    out = tmp_path / "killed"
    kills = 0
    for attempt in range(8):
        proc = subprocess.Popen([*script, str(out), "0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if attempt < 6:
            time.sleep(rng.uniform(0.7, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=120)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert kills >= 3
    assert (out / "cam.events.jsonl").read_bytes() == expected
    manifest = json.loads((out / "cam.manifest.json").read_text())
    assert any(w["status"] == "resumed" for w in manifest["windows"])  # it resumed, not started over


def test_a_killed_cameras_open_face_tracks_are_logged_on_restart(tmp_path: Path) -> None:
    """The detectors alone on a camera: a face in view for the whole run is one open track, logged
    only when it closes; a killed run lost it (hours of a person in view, no event). Each checkpoint
    now holds the open tracks, and a restart logs them as they stood."""
    import av
    from live_helpers import RtspServer, gst_rtsp_available

    from streampii.rtsp import LiveOptions, StopFlag
    from tests.redact_clip import background, face_crop

    if not gst_rtsp_available() and not os.environ.get("STREAMPII_REQUIRE_RTSP"):
        pytest.skip("GStreamer RTSP server not installed")
    face, _ = face_crop()
    still = tmp_path / "still.mp4"
    with av.open(str(still), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        image = background(320, 240)
        image[60 : 60 + face.shape[0], 100 : 100 + face.shape[1]] = face
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    srv = RtspServer("--file", str(still), "--width", "320", "--height", "240", "--fps", "10").start()
    out = tmp_path / "out"
    options = WatchOptions(
        out=out, sampler=SamplerOptions(fps=2), windows=WindowOptions(window=2.0, stride=1.0), gate=NO_GATE,
        detectors_alone=True,
    )  # fmt: skip
    live = LiveOptions(open_timeout=5, read_timeout=3, backoff_initial=0.3, backoff_max=1.0, max_outage=20)

    def killed_after_four_windows(progress) -> None:
        if progress.windows >= 4:
            raise KeyboardInterrupt  # dies like a kill: nothing after it is written

    try:
        with RunState(out) as state, pytest.raises(KeyboardInterrupt):
            watch(srv.url(), options, [], stem="cam", live=live, state=state, on_progress=killed_after_four_windows)
        assert not (out / "cam.events.jsonl").read_text()  # the face's track was still open
        restarted = time.time()
        stop = StopFlag()
        threading.Timer(3.0, stop.set, args=("test",)).start()
        with RunState(out) as state:
            watch(srv.url(), options, [], stem="cam", stop=stop, live=live, state=state)
    finally:
        srv.stop()
    faces = [json.loads(line) for line in (out / "cam.events.jsonl").read_text().splitlines()]
    assert [e["category"] for e in faces] == ["face", "face"]  # the killed run's, then the restart's
    first_end = datetime.fromisoformat(faces[0]["wall_end"].replace("Z", "+00:00")).timestamp()
    assert faces[0]["end"] - faces[0]["start"] >= 2.0 and first_end < restarted
