"""Segment folders: finished segments processed once, in time order; --watch; half-written files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from live_helpers import NO_GATE, BrightnessAnalyzer, brightness_draw
from videos import write_video

from streampii.pipeline import WatchOptions, watch
from streampii.rtsp import StopFlag
from streampii.sampler import SamplerOptions
from streampii.segments import (
    describe_segment,
    finished,
    list_segments,
    name_time,
    process_folder,
    segment_stem,
)
from streampii.state import RunState, input_key
from streampii.windows import WindowOptions

OPTIONS = dict(sampler=SamplerOptions(fps=2.0), windows=WindowOptions(window=2.0, stride=1.0), gate=NO_GATE)


@pytest.fixture(scope="module")
def segment_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("seg") / "seg.mp4", [i / 5 for i in range(40)], draw=brightness_draw(3))


def old(path: Path) -> Path:
    past = time.time() - 3600
    os.utime(path, (past, past))
    return path


def test_name_time() -> None:
    utc = datetime(2026, 11, 25, 10, 15, 0, tzinfo=UTC).timestamp()
    assert name_time("cam1_20261125T101500Z.mp4") == utc
    assert name_time("cam1_2026-11-25_10-15-00+01:00.mp4") == utc - 3600
    assert name_time("cam1_20261125T101500.mp4", local=False) == utc
    assert name_time("cam1_20261125T101500.mp4") == datetime(2026, 11, 25, 10, 15).timestamp()  # local time
    assert name_time("clip.mp4") is None
    assert describe_segment(Path("cam1_20261125T101500.mp4"), read_metadata=False).camera == "cam1"


def test_recorded_files_are_named_by_their_first_frames_wall_time(tmp_path: Path) -> None:
    """A connection's first packets arrive in a burst: each file is named by its first frame's wall
    time as the live source maps it, not by when its packets arrived (here all in one instant)."""
    from streampii.rtsp import LiveOptions, SegmentRecorder

    clip = write_video(
        tmp_path / "clip.mp4", [i / 10 for i in range(70)], codec_options={"g": "10"}
    )  # a keyframe a second
    start = datetime(2026, 11, 25, 10, 15, 0).timestamp()  # local time, as the names are
    recorder = SegmentRecorder(tmp_path / "rec", "cam", LiveOptions(segment_seconds=2.0))
    with av.open(str(clip)) as container:
        recorder.start(container)
        recorder.clock = lambda s: start + s
        for packet in container.demux(container.streams.video[0]):
            recorder.write(packet)
    recorder.stop()
    times = [name_time(name) - start for name in recorder.recorded]
    assert recorder.recorded[0] == "cam_20261125T101500.mp4" and times == [0, 2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == list(recorder.recorded)


def test_a_recorders_list_of_files_keeps_the_latest(tmp_path: Path, monkeypatch) -> None:
    """A camera records for weeks: the list of its files (in the manifest, rewritten every few
    seconds) keeps the latest ``LIVE_LIST_ROWS`` names and counts the older ones."""
    from streampii import rtsp

    monkeypatch.setattr(rtsp, "LIVE_LIST_ROWS", 2)
    clip = write_video(tmp_path / "clip.mp4", [i / 10 for i in range(70)], codec_options={"g": "10"})
    recorder = rtsp.SegmentRecorder(tmp_path / "rec", "cam", rtsp.LiveOptions(segment_seconds=2.0))
    with av.open(str(clip)) as container:
        recorder.start(container)
        recorder.clock = lambda s: 1.8e9 + s
        for packet in container.demux(container.streams.video[0]):
            recorder.write(packet)
    recorder.stop()
    files = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert len(files) == 4 and list(recorder.recorded) == files[2:] and recorder.recorded.omitted == 2


def test_order_and_half_written_segments(tmp_path: Path, segment_video: Path) -> None:
    for name in ("cam_20261125T101000Z.mp4", "cam_20261125T100000Z.mp4", "cam_20261125T100500Z.mp4"):
        shutil.copy(segment_video, tmp_path / name)
    segments = list_segments(tmp_path)
    assert [s.name[4:19] for s in segments] == ["20261125T100000", "20261125T100500", "20261125T101000"]
    # all fresh: only those followed by a later segment of the same camera are finished
    assert [s.name for s in finished(segments, settle=30)] == [s.name for s in segments[:2]]
    old(segments[2].path)
    assert len(finished(segments, settle=30)) == 3


def test_an_empty_segment_waits_while_newest_and_young_then_is_reported_once(
    tmp_path: Path, segment_video: Path
) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "c_20261125T101500Z.mp4")))
    (folder / "c_20261125T101510Z.mp4").write_bytes(b"")  # just created by the recorder
    assert [s.name for s in finished(list_segments(folder), settle=30)] == ["c_20261125T101500Z.mp4"]
    shutil.copy(segment_video, folder / "c_20261125T101520Z.mp4")  # the recorder moved on: it stays empty
    old(folder / "c_20261125T101520Z.mp4")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(out), "--vlm", "off"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 3, first.stderr
    errors = [line for line in first.stderr.splitlines() if line.startswith("streampii: error: ")]
    assert len(errors) == 1 and "c_20261125T101510Z.mp4" in errors[0] and "empty" in errors[0]
    assert len(list(out.glob("*.manifest.json"))) == 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "error" not in second.stderr, second.stderr


def test_cli_processes_each_segment_once(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    for minute in (0, 5):
        old(Path(shutil.copy(segment_video, folder / f"cam1_20261125T10{minute:02d}00Z.mp4")))
    (folder / "notes.txt").write_text("not a video")
    broken = folder / "cam2_20261125T100700Z.mp4"
    broken.write_bytes(b"garbage" * 100)
    old(broken)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(out), "--vlm", "off"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 3, first.stderr  # partial failure: one segment is not a video
    assert "cam2_20261125T100700Z.mp4" in first.stderr and "Traceback" not in first.stderr
    manifests = sorted(p.name for p in out.glob("*.manifest.json"))
    assert manifests == ["cam1_20261125T100000Z.manifest.json", "cam1_20261125T100500Z.manifest.json"]
    manifest = json.loads((out / manifests[0]).read_text())
    assert manifest["segment"] == {"segment": "cam1_20261125T100000Z.mp4", "wall_start": "2026-11-25T10:00:00.000Z"}
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "event(s)" not in second.stderr  # nothing new, broken one not retried


@pytest.mark.parametrize("command", ["watch", "segments"])
def test_a_file_name_that_is_no_utf8_is_a_clear_error_and_the_others_are_done(
    tmp_path: Path, segment_video: Path, command: str
) -> None:
    """A name with bytes that are no UTF-8 (a camera's or an old share's) ended the whole run with
    a traceback (the state's SQLite keys take no surrogate escapes), the good files beside it not done."""
    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T100000Z.mp4")))
    old(Path(shutil.copy(segment_video, os.fsdecode(bytes(folder) + b"/cam1_20261125T100500Z\xff.mp4"))))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streampii", command, str(folder), "--out", str(out), "--vlm", "off"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr  # partial failure
    assert "cam1_20261125T100500Z\\udcff.mp4: file name is not valid UTF-8" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in out.glob("*.manifest.json")] == ["cam1_20261125T100000Z.manifest.json"]


def test_segments_with_one_stem_and_two_extensions_get_their_own_outputs(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    mkv = write_video(folder / "cam1_20261125T101500Z.mkv", [i / 5 for i in range(20)])
    mp4 = Path(shutil.copy(segment_video, folder / "cam1_20261125T101500Z.mp4"))
    old(mkv), old(mp4)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(out), "--vlm", "off"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    sources = {p.name: json.loads(p.read_text())["input"]["source"] for p in out.glob("*.manifest.json")}
    assert sources == {
        "cam1_20261125T101500Z.manifest.json": str(mkv),
        "cam1_20261125T101500Z-2.manifest.json": str(mp4),
    }
    mkv.unlink()  # the recorder's retention: the other segment keeps its name, and is not done again
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "event(s)" not in second.stderr, second.stderr


def test_own_outputs_are_not_segments_when_out_is_the_folder(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    segment = old(Path(shutil.copy(segment_video, folder / "cam1_20261125T101500Z.mp4")))
    for suffix in (".redacted.mp4", ".redacted.clip001.mp4", ".redacted.partial.mp4"):
        old(Path(shutil.copy(segment, folder / f"cam1_20261125T101500Z{suffix}")))
    assert [s.name for s in list_segments(folder, out=folder)] == [segment.name]
    assert len(list_segments(folder)) == 4  # another output folder: all are inputs
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(folder), "--vlm", "off"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in folder.glob("*.manifest.json")] == ["cam1_20261125T101500Z.manifest.json"]


def test_events_carry_segment_name_and_absolute_time(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T101500Z.mp4")))
    meta = folder / "clip.mp4"  # no time in the name: creation_time from the container
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(segment_video),
            "-c",
            "copy",
            "-metadata",
            "creation_time=2026-11-25T11:00:00Z",
            str(meta),
        ],
        check=True,
    )
    old(meta)
    out = tmp_path / "out"
    options = WatchOptions(out=out, **OPTIONS)
    with RunState(out) as state:
        runs = process_folder(
            folder,
            lambda s: watch(
                str(s.path),
                options,
                [BrightnessAnalyzer()],
                stem=s.path.stem,
                state=state,
                extra=s.extra(),
                wall_start=s.start,
            ),
            lambda s: False,
        )
    assert {r.segment.name: r.segment.start_from for r in runs} == {
        "cam1_20261125T101500Z.mp4": "name",
        "clip.mp4": "metadata",
    }
    events = [json.loads(line) for line in (out / "cam1_20261125T101500Z.events.jsonl").read_text().splitlines()]
    assert events and all(e["segment"] == "cam1_20261125T101500Z.mp4" for e in events)
    assert events[0]["wall_start"].startswith("2026-11-25T10:15:0")
    start = datetime(2026, 11, 25, 10, 15, tzinfo=UTC).timestamp() + events[0]["start"]
    assert events[0]["wall_start"] == datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    events = [json.loads(line) for line in (out / "clip.events.jsonl").read_text().splitlines()]
    assert events[0]["wall_start"].startswith("2026-11-25T11:00:0")


def test_watch_picks_up_new_segments_but_not_half_written_ones(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T100000Z.mp4")))
    out = tmp_path / "out"
    options = WatchOptions(out=out, **OPTIONS)
    stop = StopFlag()
    done: list[str] = []
    results: dict[str, str] = {}

    def worker() -> None:
        with RunState(out) as state:

            def process(segment):
                result = watch(
                    str(segment.path),
                    options,
                    [],
                    stem=segment.path.stem,
                    state=state,
                    extra=segment.extra(),
                    wall_start=segment.start,
                )
                results[segment.name] = result.state
                return result

            def is_done(segment) -> bool:
                return state.status(input_key(str(segment.path), segment.path.stem)) == "complete"

            process_folder(
                folder,
                process,
                is_done,
                watch=True,
                settle=1.5,
                poll=0.1,
                stop=stop,
                on_segment=lambda run: done.append(run.segment.name),
            )

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done == ["cam1_20261125T100000Z.mp4"]
        data = segment_video.read_bytes()
        growing = folder / "cam1_20261125T100500Z.mp4"
        growing.write_bytes(data[: len(data) // 2])  # the recorder is still writing it
        time.sleep(1.0)
        assert len(done) == 1  # not read half-way
        growing.write_bytes(data)  # finished
        deadline = time.monotonic() + 20
        while len(done) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done[1] == growing.name and results[growing.name] == "complete"
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_detector_events_carry_segment_name_and_absolute_time(tmp_path: Path) -> None:
    """Without a VLM (--vlm auto, no GPU, no weights) the detectors alone log each segment's faces and
    plates, with the keys the VLM's events carry: the segment's name and wall-clock times."""
    folder = tmp_path / "rec"
    folder.mkdir()
    street = Path(__file__).resolve().parent.parent / "samples" / "street.mp4"
    old(Path(shutil.copy(street, folder / "cam1_20261125T101500Z.mp4")))
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (out / "cam1_20261125T101500Z.events.jsonl").read_text().splitlines()]
    assert {e["detector"] for e in events} == {"centerface", "ppocr"}
    for event in events:
        assert event["segment"] == "cam1_20261125T101500Z.mp4"
        wall = datetime.fromisoformat(event["wall_start"].replace("Z", "+00:00")).timestamp()
        assert abs(wall - datetime(2026, 11, 25, 10, 15, tzinfo=UTC).timestamp() - event["start"]) < 0.002


def test_a_failed_segment_is_tried_again_once_its_file_changed(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    data = segment_video.read_bytes()
    copying = folder / "cam2_20261125T101000Z.mp4"
    copying.write_bytes(data[: len(data) // 2])  # half copied, then left alone past --settle: read, fails
    old(copying)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(out), "--vlm", "off"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1 and copying.name in first.stderr, first.stderr
    unchanged = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert unchanged.returncode == 0 and not unchanged.stderr.strip(), unchanged.stderr  # not retried, not re-reported
    copying.write_bytes(data)  # the copy completed
    old(copying)
    changed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert changed.returncode == 0 and f"{copying.name}: " in changed.stderr, changed.stderr
    assert (out / "cam2_20261125T101000Z.manifest.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "event(s)" not in again.stderr, again.stderr


def test_a_segment_whose_results_cannot_be_written_is_tried_again_by_the_next_run(
    tmp_path: Path, segment_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk is the output folder's fault, not the segment's: it is not marked failed (which
    skips it until its file changes), and the next run does it."""
    import sqlite3

    from typer.testing import CliRunner

    from streampii import cli

    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T100000Z.mp4")))
    args = ["segments", str(folder), "--out", str(tmp_path / "out"), "--vlm", "off"]
    with monkeypatch.context() as m:

        def full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        m.setattr(RunState, "checkpoint", full)
        first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == 1 and "database or disk is full" in first.output, first.output
    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "cam1_20261125T100000Z.mp4: " in again.output, again.output
    manifest = json.loads((tmp_path / "out" / "cam1_20261125T100000Z.manifest.json").read_text())
    assert manifest["state"] == "complete"


def wait_for_text(path: Path, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 60
    while path.read_text().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text()


def test_watch_tries_a_failed_segment_again_once_its_file_changed(tmp_path: Path, segment_video: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    data = segment_video.read_bytes()
    copying = folder / "cam2_20261125T101000Z.mp4"
    copying.write_bytes(data[: len(data) // 2])
    old(copying)
    log = tmp_path / "stderr"
    cmd = [sys.executable, "-m", "streampii", "segments", str(folder), "--out", str(tmp_path / "out"), "--vlm", "off"]
    with log.open("w") as stderr:
        proc = subprocess.Popen([*cmd, "--watch", "--poll", "0.05", "--settle", "0.5"], stderr=stderr)
    try:
        wait_for_text(log, "error: ")
        time.sleep(1.0)  # many polls: an unchanged file is not tried again
        copying.write_bytes(data)  # the copy completed
        text = wait_for_text(log, "event(s)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert text.count("error: ") == 1 and f"{copying.name}: " in text and "event(s)" in text, text
    assert proc.returncode == 0, text  # the segment ended analysed: its earlier failure is not the run's outcome


def test_one_folder_named_three_ways_is_processed_once(tmp_path: Path, segment_video: Path) -> None:
    """cron names the folder by its absolute path, a person by a relative one: one state for both."""
    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T101500Z.mp4")))
    runs = [("rec", tmp_path), (str(folder), tmp_path), (".", folder)]
    stderr = []
    for spelling, cwd in runs:
        cmd = [sys.executable, "-m", "streampii", "segments", spelling, "--out", str(tmp_path / "out"), "--vlm", "off"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
        assert done.returncode == 0, done.stderr
        stderr.append(done.stderr)
    assert "event(s)" in stderr[0] and not any("event(s)" in text for text in stderr[1:]), stderr
    assert [p.name for p in (tmp_path / "out").glob("*.manifest.json")] == ["cam1_20261125T101500Z.manifest.json"]


def test_a_segment_recorded_under_its_path_as_typed_keeps_its_row(tmp_path: Path) -> None:
    """State written before segments were keyed by their resolved path: the row of the same file is
    taken over (not done again, no -2 name); a file of the same name elsewhere is another segment."""
    segment = tmp_path / "rec" / "cam1.mp4"
    with RunState(tmp_path / "out") as state:
        state.mark(input_key("/elsewhere/rec/cam1.mp4", "cam1"), "complete")
        state.mark("cam1|other/cam1.mp4", "complete")  # keys as earlier versions wrote them: the path as typed
        assert segment_stem(state, segment) == "cam1-2"  # (before: another segment of that name only)
        for typed in ("rec/cam1.mp4", "../rec/./cam1.mp4", "cam1.mp4"):
            state.forget(input_key(str(segment), "cam1-2"))
            state.mark(f"cam1|{typed}", "complete")
            assert segment_stem(state, segment) == "cam1", typed
            assert state.status(input_key(str(segment), "cam1")) == "complete"
            assert state.status(f"cam1|{typed}") is None
            state.forget(input_key(str(segment), "cam1"))


def test_a_segment_deleted_or_renamed_before_its_turn_is_no_failure(
    tmp_path: Path, segment_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorder's retention deletes old segments while a run works through a backlog."""
    from typer.testing import CliRunner

    from streampii import cli, segments

    folder = tmp_path / "rec"
    folder.mkdir()
    names = [f"cam1_20261125T10{minute:02d}00Z.mp4" for minute in (0, 5, 10)]
    for name in names:
        old(Path(shutil.copy(segment_video, folder / name)))
    analyse = segments.watch_input

    def first_then_retention(source, *args, **kwargs):
        if source.endswith(names[0]):
            (folder / names[1]).rename(folder / (names[1] + ".old"))
            (folder / names[2]).unlink()
        return analyse(source, *args, **kwargs)

    monkeypatch.setattr(segments, "watch_input", first_then_retention)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["segments", str(folder), "--out", str(out), "--vlm", "off"])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output, result.output
    assert result.output.count("deleted or renamed") == 2, result.output
    with RunState(out) as state:
        assert [state.stem_of(str(folder / name)) for name in names] == [names[0][:-4], None, None]


def test_watch_waits_for_a_folder_that_disappears(tmp_path: Path) -> None:
    """An unmounted share, a recorder recreating its folder: one warning each time it goes."""
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "cam1_20261125T100000Z.mp4").write_bytes(b"x")
    old(folder / "cam1_20261125T100000Z.mp4")
    stop = StopFlag()
    done: list[str] = []
    warnings: list[str] = []

    def wait_until(condition) -> None:
        deadline = time.monotonic() + 20
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    kwargs = dict(watch=True, poll=0.02, stop=stop, on_warning=warnings.append)
    args = (folder, lambda s: done.append(s.name), lambda s: False)
    thread = threading.Thread(target=process_folder, args=args, kwargs=kwargs)
    thread.start()
    try:
        wait_until(lambda: done)
        folder.rename(tmp_path / "away")
        wait_until(lambda: warnings)
        time.sleep(0.3)  # polls on: no new warning while it stays away
        assert len(warnings) == 1 and "rec: cannot be read" in warnings[0], warnings
        (tmp_path / "away").rename(folder)
        (folder / "cam1_20261125T100500Z.mp4").write_bytes(b"y")
        old(folder / "cam1_20261125T100500Z.mp4")
        wait_until(lambda: len(done) == 2)
        shutil.rmtree(folder)
        wait_until(lambda: len(warnings) == 2)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert done == ["cam1_20261125T100000Z.mp4", "cam1_20261125T100500Z.mp4"] and len(warnings) == 2, warnings


def test_sigterm_stops_a_segment_resumable_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's stop signal: the current window finishes, the segment is left to the next run."""
    from typer.testing import CliRunner

    from streampii import cli

    folder = tmp_path / "rec"
    folder.mkdir()
    segment = old(write_video(folder / "cam6_20261126T110000Z.mp4", [i / 5 for i in range(100)]))

    class StoppedOnce(BrightnessAnalyzer):
        stopped = False

        def analyze(self, windows):
            if windows[0].index >= 3 and not StoppedOnce.stopped:
                StoppedOnce.stopped = True
                os.kill(os.getpid(), signal.SIGTERM)  # what systemctl stop sends
            return super().analyze(windows)

    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([StoppedOnce()], None))
    out = tmp_path / "out"
    args = ["segments", str(folder), "--out", str(out), "--gate", "off", "--fps", "2", "--window", "2", "--stride", "1"]
    stopped = CliRunner().invoke(cli.app, args)
    assert stopped.exit_code == 0, stopped.output
    assert "stopped (SIGTERM)" in stopped.output and "warning" not in stopped.output, stopped.output
    key = input_key(str(segment), segment.stem)
    with RunState(out) as state:
        assert state.status(key) == "running"  # neither failed nor done: resumable
    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "event(s)" in again.output, again.output
    with RunState(out) as state:
        assert state.status(key) == "complete"
    manifest = json.loads((out / f"{segment.stem}.manifest.json").read_text())
    assert manifest["counts"]["windows_resumed"] >= 3


def test_a_bug_met_on_one_segment_fails_it_alone(tmp_path: Path, segment_video: Path, monkeypatch) -> None:
    """A fault of ours on one segment ended `segments` with a traceback: a service restarted on the crash
    met it again and never reached the later segments. The segment fails (marked, not tried again until
    its file changes), the others are processed."""
    from typer.testing import CliRunner

    from streampii import cli, segments

    folder = tmp_path / "rec"
    folder.mkdir()
    names = [f"cam1_20261125T10{minute:02d}00Z.mp4" for minute in (0, 5)]
    for name in names:
        old(Path(shutil.copy(segment_video, folder / name)))
    analyse = segments.watch_input

    def buggy_on_the_first(source, *args, **kwargs):
        if source.endswith(names[0]):
            raise ZeroDivisionError("float division by zero")
        return analyse(source, *args, **kwargs)

    monkeypatch.setattr(segments, "watch_input", buggy_on_the_first)
    out = tmp_path / "out"
    args = ["segments", str(folder), "--out", str(out), "--vlm", "off"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 3, result.output
    assert f"{names[0]}: internal error: ZeroDivisionError: float division by zero" in result.output
    assert f"{names[1]}: 0 event(s)" in result.output
    again = CliRunner().invoke(cli.app, args)  # not tried again: its file has not changed
    assert again.exit_code == 0 and "internal error" not in again.output, again.output


def test_a_segment_whose_redacted_video_meets_a_full_disk_is_tried_again(
    tmp_path: Path, segment_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while the redacted video was written marked the segment failed for good (until its
    file changed), though the folder was at fault: the next run does it, as for the log's full disk."""
    import errno

    from typer.testing import CliRunner

    from streampii import cli
    from streampii.writer import VideoWriter

    folder = tmp_path / "rec"
    folder.mkdir()
    old(Path(shutil.copy(segment_video, folder / "cam1_20261125T100000Z.mp4")))
    args = ["segments", str(folder), "--out", str(tmp_path / "out"), "--vlm", "off", "--blur"]
    with monkeypatch.context() as m:

        def full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        m.setattr(VideoWriter, "write", full)
        first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == 1 and "No space left on device" in first.output, first.output
    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "cam1_20261125T100000Z.mp4: " in again.output, again.output
    assert (tmp_path / "out" / "cam1_20261125T100000Z.redacted.mp4").is_file()


def test_a_segment_whose_windows_got_no_answer_is_a_partial_failure(
    tmp_path: Path, segment_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing GPU gave a segment no analysis, and `segments` exited 0 as if all was well."""
    from typer.testing import CliRunner

    from streampii import cli
    from streampii.analyzers import WindowResult

    class BrokenGpu:
        name = "qwen2-vl"

        def analyze(self, windows):
            error = "model call failed (RuntimeError: CUDA error)"
            return [WindowResult(w, [], self.name, error=error, unanswered=True) for w in windows]

        def describe(self) -> dict:
            return {"name": self.name}

    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([BrokenGpu()], None))
    folder = tmp_path / "rec"
    folder.mkdir()
    for minute in (0, 5):
        old(Path(shutil.copy(segment_video, folder / f"cam1_20261125T10{minute:02d}00Z.mp4")))
    result = CliRunner().invoke(cli.app, ["segments", str(folder), "--out", str(tmp_path / "out"), "--gate", "off"])
    assert result.exit_code == 1, result.output  # every segment: a failure
    assert result.output.count("got no answer from the VLM: model call failed") == 2, result.output


def test_a_watching_run_keeps_only_its_latest_runs(tmp_path: Path, monkeypatch) -> None:
    """``segments --watch`` runs for weeks: it hands each segment's run on as it ends and keeps the
    latest ``WATCH_RUNS`` of them (for the summary), not one for every segment it ever saw."""
    from streampii import segments

    monkeypatch.setattr(segments, "WATCH_RUNS", 3)
    folder = tmp_path / "rec"
    folder.mkdir()
    stop = StopFlag()
    done: list[str] = []

    def process(segment):
        done.append(segment.name)
        segment.path.unlink()  # a recorder's retention: the folder never holds many files
        if len(done) < 10:
            path = folder / f"cam1_20261125T10{len(done):02d}00Z.mp4"
            path.write_bytes(b"x")
            old(path)
        else:
            stop.set("test")

    (folder / "cam1_20261125T100000Z.mp4").write_bytes(b"x")
    old(folder / "cam1_20261125T100000Z.mp4")
    runs = process_folder(folder, process, lambda s: False, watch=True, poll=0.01, stop=stop)
    assert len(done) == 10 and [r.segment.name for r in runs] == done[-3:]


def test_a_watching_run_asks_the_state_about_a_done_segment_once(tmp_path: Path) -> None:
    """Every scan lists the whole folder: a segment found done is not looked up in the state again
    while its file stays as it is (a week of 5-minute segments: 2,000 look-ups every 2 s), but is
    once the file changed."""
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ("cam1_20261125T100000Z.mp4", "cam1_20261125T100500Z.mp4"):
        (folder / name).write_bytes(b"x")
        old(folder / name)
    stop = StopFlag()
    asked: list[str] = []

    def is_done(segment) -> bool:
        asked.append(segment.name)
        return True

    thread = threading.Thread(
        target=process_folder, args=(folder, lambda s: None, is_done), kwargs=dict(watch=True, poll=0.01, stop=stop)
    )
    thread.start()

    def scans_until(done) -> None:  # (a loaded machine may take long for the first scans)
        deadline = time.monotonic() + 20
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # then tens of scans more, every 0.01 s

    try:
        scans_until(lambda: len(asked) >= 2)
        assert sorted(asked) == ["cam1_20261125T100000Z.mp4", "cam1_20261125T100500Z.mp4"]
        (folder / "cam1_20261125T100000Z.mp4").write_bytes(b"xy")  # a copy completed later
        old(folder / "cam1_20261125T100000Z.mp4")
        scans_until(lambda: len(asked) >= 3)
    finally:
        stop.set("test")
        thread.join(timeout=20)
    assert asked.count("cam1_20261125T100000Z.mp4") == 2 and len(asked) == 3
