"""`streampii watch` end to end with --vlm off: outputs, contract, and every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from videos import write_video

from streampii.events import Event
from streampii.sinks import EventLog, event_schema


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streampii", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "no_videos").mkdir()
    (root / "no_videos" / "notes.txt").write_text("nothing to see")
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    data = clips["intel_car-detection"].read_bytes()
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    # moov atom at the end, cut before it: the container has no index at all
    moov_last = write_video(root / "moov_last.mp4", [i / 10 for i in range(30)])
    (root / "half_moov_last.mp4").write_bytes(moov_last.read_bytes()[: moov_last.stat().st_size // 2])
    (root / "loop.mp4").symlink_to("loop.mp4")  # a symlink to itself: no path resolves it
    os.mkfifo(root / "fifo.mp4")  # its size is 0: it was said to be an empty file
    audio_only = root / "audio_only.mp4"
    import av
    import numpy as np

    with av.open(str(audio_only), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {
        "missing": root / "missing.mp4",
        "no_videos": root / "no_videos",
        "zero": root / "zero.mp4",
        "text": root / "text.mp4",
        "half_moov_last": root / "half_moov_last.mp4",
        "audio_only": audio_only,
        "half": root / "half.mp4",
        "thin": write_video(root / "thin.mp4", [0.0, 0.5], size=(2000, 8)),
        "symlink_loop": root / "loop.mp4",
        "fifo": root / "fifo.mp4",
        "device": Path("/dev/zero"),
    }


REASONS = {
    "missing": "no such file",
    "no_videos": "folder holds no video files",
    "zero": "file is empty",
    "text": "not a video file",
    "half_moov_last": "not a video file",
    "audio_only": "has no video stream",
    "thin": "aspect ratio above 200:1",
    "symlink_loop": "symbolic link loop",
    "fifo": "not a regular file",
    "device": "not a regular file",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_input_is_one_line_and_nonzero(bad_inputs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    result = run("watch", str(bad_inputs[kind]), "--vlm", "off", "--out", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streampii: error: ") and str(bad_inputs[kind]) in lines[0]
    assert REASONS[kind] in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("*.events.jsonl"))


def test_good_inputs_complete_beside_bad_ones(
    bad_inputs: dict[str, Path], clips: dict[str, Path], tmp_path: Path
) -> None:
    good = clips["intel_face-demographics-walking-and-pause"]
    args = [str(p) for p in bad_inputs.values()] + [str(good)]
    result = run("watch", *args, "--vlm", "off", "--out", str(tmp_path))
    assert result.returncode == 3, result.stderr  # partial failure
    assert "Traceback" not in result.stderr
    assert result.stderr.count("streampii: error: ") == len(REASONS)
    assert f"{len(args)} input(s)" in result.stdout  # the summary has a row for every input, failed ones too
    manifest = json.loads((tmp_path / f"{good.stem}.manifest.json").read_text())
    assert manifest["state"] == "complete"
    truncated = json.loads((tmp_path / "half.manifest.json").read_text())
    assert truncated["state"] == "truncated"
    assert 5 < truncated["decode"]["last_time"] < truncated["input"]["duration"] - 5
    assert "cut short" in truncated["error"]
    assert truncated["counts"]["windows_total"] >= 2


def test_outputs_follow_the_contract(clips: dict[str, Path], tmp_path: Path) -> None:
    clip = clips["intel_car-detection"]
    result = run(
        "watch", str(clip), "--vlm", "off", "--out", str(tmp_path), "--fps", "2", "--window", "4", "--stride", "3"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "intel_car-detection.events.jsonl").read_text() == ""
    manifest = json.loads((tmp_path / "intel_car-detection.manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["finished_at"]
    assert manifest["settings"]["fps"] == 2 and manifest["settings"]["window"] == 4
    assert manifest["input"]["width"] == 768 and manifest["input"]["codec"] == "h264"
    assert manifest["input"]["has_audio"] is True and abs(manifest["input"]["duration"] - 30.16) < 0.1
    assert manifest["analyzers"] == [] and "--vlm off" in manifest["analyzers_note"]
    counts = manifest["counts"]
    assert counts["frames_decoded"] == 377 and counts["frames_sampled"] == 61
    assert counts["windows_total"] == len(manifest["windows"]) == 10  # 8 frames every 6
    assert manifest["timings"]["wall_seconds"] > 0
    assert "complete" in result.stdout and "intel_car" in result.stdout  # the summary table


@pytest.mark.parametrize("suffix", [".mkv", ".ts"])
def test_a_file_that_starts_late_is_complete_with_its_own_duration(tmp_path: Path, suffix: str) -> None:
    """Times count from the first frame. A Matroska segment's duration counts from timestamp 0: a
    file starting at 5 s was read as 5 s longer than it is, and its run said "cut short" (exit 3)."""
    clip = write_video(tmp_path / f"late{suffix}", [5 + i / 10 for i in range(40)])
    result = run("watch", str(clip), "--vlm", "off", "--out", str(tmp_path / "out"), "--window", "2", "--stride", "2")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "late.manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["error"] is None
    assert manifest["input"]["start_time"] == 5.0 and abs(manifest["input"]["duration"] - 4.0) < 0.1
    assert [(w["start"], w["end"]) for w in manifest["windows"]] == [(0.0, 1.0), (2.0, 3.0), (3.9, 3.9)]


def test_a_matroska_file_whose_sound_outlasts_the_picture_is_complete(tmp_path: Path) -> None:
    """A Matroska segment lasts as long as its longest stream: a 2 s picture with 5 s of sound (or
    subtitles) was taken for a 5 s video cut short (exit 3, "damaged or cut short"). The video
    track's own duration tag is its length."""
    clip = write_video(tmp_path / "talk.mkv", [i / 10 for i in range(20)], audio_seconds=5.0)
    result = run("watch", str(clip), "--vlm", "off", "--out", str(tmp_path / "out"), "--window", "2", "--stride", "2")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "talk.manifest.json").read_text())
    assert manifest["state"] == "complete" and abs(manifest["input"]["duration"] - 2.0) < 0.15


def test_event_schema_accepts_events_and_rejects_bad_ones(tmp_path: Path) -> None:
    from streampii.analyzers import TimedBox

    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    event = Event(
        "license_plate",
        1.0,
        2.5,
        "cam.mp4",
        value="AB 123",
        confidence=0.9,
        boxes=[TimedBox(1.0, (1, 2, 30, 40))],
        wall_start=1.7e9,
        wall_end=1.7e9 + 1.5,
    )
    with EventLog(tmp_path / "x.events.jsonl") as log:
        log.write(event)
    line = json.loads((tmp_path / "x.events.jsonl").read_text())
    jsonschema.validate(line, schema)
    for bad in ({"category": "face", "start": 0}, {**line, "category": "secret"}, {**line, "start": -1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_version_help_and_usage_errors(tmp_path: Path) -> None:
    assert run("--version").stdout.startswith("streampii ")
    help_text = run("watch", "--help").stdout
    for option in ("--fps", "--max-pixels", "--window", "--stride", "--vlm", "--model", "--blur", "--device", "--json"):
        assert option in help_text
    bad = run("watch", "x.mp4", "--window", "2", "--stride", "5", "--out", str(tmp_path))
    assert bad.returncode == 2 and "stride" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("command", ["watch", "segments"])
@pytest.mark.parametrize(("out", "reason"), [("clip.mp4", "not a folder"), ("clip.mp4/sub", "cannot create")])
def test_an_out_folder_that_cannot_be_one_is_a_usage_error(tmp_path: Path, command: str, out: str, reason: str) -> None:
    write_video(tmp_path / "clip.mp4", [i / 5 for i in range(10)])
    target = "clip.mp4" if command == "watch" else "."
    result = run(command, target, "--vlm", "off", "--out", out, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"streampii: error: --out {out}: {reason}")
    assert not list(tmp_path.glob("*.manifest.json"))  # before any input is read


@pytest.mark.parametrize("command", ["watch", "segments"])
def test_a_state_file_that_is_no_database_is_one_line(tmp_path: Path, command: str) -> None:
    """``--out`` holding a damaged ``streampii-state.sqlite`` was an sqlite3 traceback."""
    write_video(tmp_path / "clip.mp4", [i / 5 for i in range(10)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "streampii-state.sqlite").write_text("not a database\n")
    target = "clip.mp4" if command == "watch" else "."
    result = run(command, target, "--vlm", "off", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()  # one line, no traceback
    assert (
        line == "streampii: error: --out out: cannot use its state file streampii-state.sqlite (file is not a database)"
    )
    assert not list((tmp_path / "out").glob("*.manifest.json"))  # before any input is read


BAD_OPTIONS = [  # (command, options, the error line's start)
    ("watch", ["--fps", "inf"], "--fps must be above 0 and at most 1000, got inf"),
    ("watch", ["--fps", "1e300"], "--fps must be above 0 and at most 1000"),
    ("watch", ["--fps", "200"], "--window 8 s at --fps 200 is 1600 frames a window: at most 768"),
    ("watch", ["--fps", "12", "--window", "64", "--stride", "60", "--vlm", "qwen2-vl"], "--window 64 s at --fps 12"),
    ("watch", ["--window", "inf"], "--window must be above 0 s and at most 3600 s, got inf"),
    ("watch", ["--window", "1e300", "--stride", "1"], "--window must be above 0 s"),
    ("watch", ["--max-pixels", "100000000000"], "--max-pixels must be within 784..12845056"),
    ("watch", ["--blur", "--mask-scale", "inf"], "--mask-scale must be above 0 and at most 10"),
    ("watch", ["--blur", "--preset", "bogus"], "--preset must be one of ultrafast, superfast,"),
    ("watch", ["--face-threshold", "2"], "--face-threshold must be within 0..1, got 2.0"),
    ("watch", ["--face-threshold", "nan"], "--face-threshold must be within 0..1, got nan"),
    ("watch", ["--text-threshold", "-0.1"], "--text-threshold must be within 0..1"),
    ("watch", ["--detect-interval", "inf"], "--detect-interval must be within 0..2 s"),
    ("watch", ["--device", "bogus", "--vlm", "qwen2-vl"], "--device must be auto, cpu, cuda or cuda:N"),
    ("watch", ["--max-new-tokens", "100000000"], "--max-new-tokens must be within 16..32768"),
    ("watch", ["--batch-size", "100000"], "--batch-size must be within 1..256"),
    ("watch", ["--timeout", "inf"], "--timeout must be above 0 s"),
    ("watch", ["--segment-seconds", "nan"], "--segment-seconds must be above 0 s"),
    ("watch", ["--record", "clip.mp4"], "--record clip.mp4: not a folder"),
    ("watch", ["--blur", "--vlm", "off", "--detect", ""], "--detect must name at least one of face, plate, text"),
    ("watch", ["--vlm", "auto", "--detect", " , "], "--detect must name at least one of face, plate, text"),
    ("watch", ["--clips"], "--clips writes the blurred video's stretches around PII: it needs --blur"),
    ("segments", ["--fps", "inf"], "--fps must be above 0"),
    ("segments", ["--settle", "nan"], "--settle must be within 0..86400 s"),
    ("segments", ["--watch", "--poll", "0"], "--poll must be above 0 s"),
    ("segments", ["--blur", "--vlm", "off", "--detect", ""], "--detect must name at least one"),
]


@pytest.mark.parametrize(("command", "options", "message"), BAD_OPTIONS)
def test_bad_option_values_are_one_line_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, options: list[str], message: str
) -> None:
    """Every number finite and within its range, every name one that exists: a usage error
    before any input is read or any model loaded, never a traceback or a run that masks nothing."""
    from typer.testing import CliRunner

    from streampii import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([], "no VLM here"))
    write_video(tmp_path / "clip.mp4", [i / 5 for i in range(10)])
    target = "clip.mp4" if command == "watch" else "."
    result = CliRunner().invoke(cli.app, [command, target, "--out", "out", *options])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"streampii: error: {message}"), result.output
    assert not list(tmp_path.glob("out/*.manifest.json"))


def test_same_stem_in_two_folders_gets_two_outputs(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "cam.mp4", [i / 5 for i in range(10)])
    result = run("watch", str(tmp_path / "a"), str(tmp_path / "b"), "--vlm", "off", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.manifest.json")) == [
        "cam-2.manifest.json",
        "cam.manifest.json",
    ]


def test_an_input_keeps_its_outputs_whichever_inputs_a_later_run_has(tmp_path: Path) -> None:
    """d1/x.mp4 and d2/x.mp4 got x.* and x-2.*; d2/x.mp4 run alone later got x.* and overwrote
    d1's results. The --out folder's state now keeps each input's stem, with --no-resume too and
    whatever the spelling of its path."""
    for folder, frames in (("d1", 10), ("d2", 5), ("d3", 3)):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "x.mp4", [i / 5 for i in range(frames)])
    out = tmp_path / "out"
    runs = [
        (["d1/x.mp4", "d2/x.mp4"], tmp_path),
        (["d2/x.mp4"], tmp_path),
        (["d2/x.mp4", "--no-resume"], tmp_path),
        ([str(tmp_path / "d2" / "x.mp4")], tmp_path),
        (["x.mp4"], tmp_path / "d2"),
        (["d1/x.mp4"], tmp_path),
        (["d3/x.mp4", "d2/x.mp4"], tmp_path),  # a newcomer of the same name takes neither x nor x-2
    ]
    for args, cwd in runs:
        result = subprocess.run(
            [sys.executable, "-m", "streampii", "watch", *args, "--vlm", "off", "--out", str(out)],
            capture_output=True, text=True, cwd=cwd, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    sources = {p.name: Path(json.loads(p.read_text())["source"]).parent.name for p in out.glob("*.manifest.json")}
    assert sources == {"x.manifest.json": "d1", "x-2.manifest.json": "d2", "x-3.manifest.json": "d3"}


def test_an_input_named_twice_is_processed_once_under_its_own_stem(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    write_video(folder / "cam.mp4", [i / 5 for i in range(10)])
    (tmp_path / "link.mp4").symlink_to(folder / "cam.mp4")
    names = ["m", "m/cam.mp4", "./m/cam.mp4", str(folder / "cam.mp4"), "link.mp4"]
    result = run("watch", *names, "--vlm", "off", "--jobs", "2", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "o").glob("*.manifest.json")) == ["cam.manifest.json"]
    assert "1 input(s)" in result.stdout


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://alice:Xy@Secret9@10.0.0.5:554/cam", "rtsp://***@10.0.0.5:554/cam"),  # FFmpeg: the last "@"
        ("rtsp://admin:pa/ss@cam.lan/s1: invalid argument", "rtsp://***@cam.lan/s1: invalid argument"),
        ("rtsp://admin:pa ss@cam.lan/s1: invalid argument", "rtsp://***@cam.lan/s1: invalid argument"),
        ("RTSP://Admin:Pw@Cam.lan/s1", "RTSP://***@Cam.lan/s1"),
        ("rtsp://cam.lan:554/s1: connection refused", "rtsp://cam.lan:554/s1: connection refused"),
        ("rtsp://***@cam.lan/s1", "rtsp://***@cam.lan/s1"),
        ("a rtsp://u:p1@h1/x\nb rtsps://u:p2@h2/y", "a rtsp://***@h1/x\nb rtsps://***@h2/y"),
        # query-string credentials (Dahua, Amcrest, NVRs): values masked, the query left out of names
        ("rtsp://h:554/cam?user=admin&password=S3cret", "rtsp://h:554/cam?user=***&password=***"),
        (
            "rtsp://h/cam?channel=1&PWD=S3&usr=a&Login=b&passwd=c",
            "rtsp://h/cam?channel=1&PWD=***&usr=***&Login=***&passwd=***",
        ),
        (
            "https://h/s?access_token=T&X-Amz-Signature=Z&sig=Y&apikey=K#f",
            "https://h/s?access_token=***&X-Amz-Signature=***&sig=***&apikey=***#f",
        ),
        ("rtsp://h/cam?auth=T&secret=S: 401 unauthorized", "rtsp://h/cam?auth=***&secret=*** 401 unauthorized"),
    ],
)
def test_urls_are_shown_and_named_without_their_credentials(text: str, shown: str) -> None:
    from streampii.pipeline import output_stem
    from streampii.source import redact_url

    assert redact_url(text) == shown
    if " " not in shown:
        name = shown.split("@", 1)[-1].split("?")[0].split("#")[0]
        assert output_stem(text) == name.split("://")[-1].replace(":", "_").replace("/", "_")


def test_inputs_with_the_longest_names_get_outputs_of_names_that_fit(tmp_path: Path) -> None:
    """A 240-character file name made ``<stem>.manifest.json.tmp`` longer than a file name may be
    (255 bytes): a traceback that ended the batch. Stems are cut to 200 bytes, by whole characters."""
    clip = write_video(tmp_path / "clip.mp4", [i / 5 for i in range(10)])
    names = ["a" * 240 + "1.mp4", "a" * 240 + "2.mp4", "é" * 125 + ".mp4"]  # 246, 246, 254 bytes
    for name in names:
        shutil.copy(clip, tmp_path / name)
    result = run("watch", *names, "--vlm", "off", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stems = ["a" * 200, "a" * 200 + "-2", "é" * 100]
    for stem in stems:
        assert json.loads((tmp_path / "out" / f"{stem}.manifest.json").read_text())["state"] == "complete"


def test_an_input_another_run_is_writing_into_the_same_out_is_left_to_it(tmp_path: Path) -> None:
    """Two runs with the same input and --out at once wrote one log together (NUL bytes where the
    second cut it) and the second removed the first's redacted video while it was written. The run
    that comes second now leaves that input alone, with one line, and does its other inputs."""
    import fcntl

    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", [i / 5 for i in range(10)])
    out = tmp_path / "out"
    out.mkdir()
    partial = out / "a.redacted.mp4.partial"
    partial.write_bytes(b"being written")
    with open(out / "a.events.jsonl", "a") as log:  # the other run's lock
        log.write('{"category": "face"}\n')
        log.flush()
        fcntl.flock(log, fcntl.LOCK_EX)
        result = run("watch", "a.mp4", "b.mp4", "--vlm", "off", "--blur", "--out", "out", cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        line = "streampii: error: a.mp4: another streampii run is writing its outputs (a.*) in out"
        assert result.stderr.splitlines() == [line]
        assert (out / "a.events.jsonl").read_text() == '{"category": "face"}\n' and partial.exists()
        assert not (out / "a.manifest.json").exists()
        assert json.loads((out / "b.manifest.json").read_text())["state"] == "complete"
    again = run("watch", "a.mp4", "--vlm", "off", "--blur", "--out", "out", cwd=tmp_path)  # the lock went with it
    assert again.returncode == 0, again.stderr
    assert (out / "a.redacted.mp4").is_file() and not partial.exists()


def test_own_outputs_in_the_out_folder_are_not_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "sw"
    (folder / "sub").mkdir(parents=True)
    write_video(folder / "a.mp4", [i / 5 for i in range(10)])
    for name in ("a.redacted.mp4", "a.redacted.clip001.mp4", "a.redacted.partial.mp4", "sub/b.redacted.mp4"):
        shutil.copy(folder / "a.mp4", folder / name)
    # a name like an output, but outside --out, or named on the command line: an input
    result = run("watch", "sw", "sw/a.redacted.clip001.mp4", "--vlm", "off", "--out", "sw", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.glob("*.manifest.json")) == [
        "a.manifest.json",
        "a.redacted.clip001.manifest.json",
        "b.redacted.manifest.json",
    ]


def test_a_folder_gives_every_video_that_ffmpeg_reads(tmp_path: Path) -> None:
    """A folder's MPEG-PS (.mpg, .vob: camcorders, TV and DVD recordings), .3gp, Flash, Windows
    Media and MXF videos were skipped without a word ("folder holds no video files" where they
    were all it held), though each plays when named alone."""
    from streampii.source import expand_inputs

    names = ["a.mpg", "b.MPEG", "c.vob", "d.3gp", "e.flv", "f.wmv", "g.asf", "h.mxf", "i.mp4"]
    for name in [*names, "notes.txt", "cover.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    assert [Path(p).name for p in expand_inputs([str(tmp_path)])] == names


def test_runs_from_any_folder_with_no_stdin(tmp_path: Path, clips: dict[str, Path]) -> None:
    clip = tmp_path / "clip.mp4"
    shutil.copy(clips["intel_face-demographics-walking-and-pause"], clip)
    result = run("watch", "clip.mp4", "--vlm", "off", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == ""  # no events without analyzers; table on stderr
    assert (tmp_path / "o" / "clip.manifest.json").exists()


def test_json_lines_reach_a_piped_stdout_while_the_progress_bar_shows(tmp_path: Path, clips: dict[str, Path]) -> None:
    """`watch --json | jq` in a terminal: stderr is the terminal, so the progress bar shows; the
    events go to the pipe all the same (rich sent them through the bar's console, to stderr)."""
    import pty
    import threading

    shutil.copy(clips["intel_face-demographics-walking-and-pause"], tmp_path / "clip.mp4")
    terminal, stderr = pty.openpty()
    args = [sys.executable, "-m", "streampii", "watch", "clip.mp4", "--vlm", "off", "--blur", "--json", "--out", "o"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, cwd=tmp_path)
    os.close(stderr)
    shown = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the process is gone
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    stdout = proc.stdout.read().decode()
    assert proc.wait(timeout=300) == 0, shown.decode(errors="replace")
    reader.join(10)
    os.close(terminal)
    logged = (tmp_path / "o" / "clip.events.jsonl").read_text()
    assert logged and stdout == logged  # every event, one JSON line each
    assert b'"category"' not in shown


def test_json_with_no_stdout_at_all_is_a_usage_error(tmp_path: Path, clips: dict[str, Path]) -> None:
    """Started with stdout closed (`>&-`): one line and exit 2 before any input is read (it was an
    internal error with a traceback at the first event)."""
    shutil.copy(clips["intel_face-demographics-walking-and-pause"], tmp_path / "clip.mp4")
    args = [sys.executable, "-m", "streampii", "watch", "clip.mp4", "--vlm", "off", "--blur", "--json", "--out", "o"]
    result = subprocess.run(args, stdout=None, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert result.returncode == 2 and result.stderr == "streampii: error: --json: stdout is closed\n"
    assert not (tmp_path / "o").exists()


def test_json_to_a_reader_that_went_away_stops_the_run_as_ctrl_c(tmp_path: Path, clips: dict[str, Path]) -> None:
    """``--json | head -1``: stdout closed is no fault of the input nor of --out (it was: both
    inputs failed, 'cannot write its results in OUT: Broken pipe', exit 1)."""
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(clips["intel_face-demographics-walking-and-pause"], tmp_path / name)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first event
    with os.fdopen(write_end, "w") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "streampii", "watch", "a.mp4", "b.mp4", "--vlm", "off", "--blur", "--json"]
            + ["--out", "o"],
            stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
    assert "stdout was closed: stopping" in result.stderr
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr
    assert result.returncode == 3  # cut short, as by Ctrl-C
    manifest = json.loads((tmp_path / "o" / "a.manifest.json").read_text())
    assert manifest["state"] in ("interrupted", "complete") and manifest["counts"]["events"] >= 1
    assert "b.mp4: not started" in result.stderr and not (tmp_path / "o" / "b.manifest.json").exists()


def test_torchs_idle_threads_sleep_unless_the_user_says_otherwise() -> None:
    """OMP_WAIT_POLICY=PASSIVE before torch loads (its spinning threads took CPU from the pipeline)."""
    import os

    code = "import os, streampii.cli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
        == "PASSIVE"
    )
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"
    )


def test_watch_and_segments_declare_their_common_options_alike() -> None:
    import typer.main

    from streampii.cli import app

    commands = typer.main.get_command(app).commands

    def options(name: str) -> dict:
        return {
            p.name: (
                p.opts,
                p.help,
                p.default,
                p.min,
                getattr(p, "rich_help_panel", None),
                p.type_descriptor.annotation,
            )
            for p in commands[name].params
        }

    watch, segments = options("watch"), options("segments")
    common = ("fps", "max_pixels", "window", "stride", "vlm", "model", "device", "batch_size", "kv_cache", "gate")
    for name in (*common, "blur", "detect"):
        assert watch[name] == segments[name], name


def test_a_failed_windows_warning_names_its_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VLM's unusable answers were bare lines ("window 1 (6.00-7.92 s): ...") from Python's
    last-resort log handler: with --jobs 2 or a camera beside files, no one could tell whose."""
    from typer.testing import CliRunner

    from streampii import cli
    from streampii.analyzers import WindowResult

    class Unreadable:
        name = "qwen2-vl"

        def analyze(self, windows):
            return [WindowResult(w, [], self.name, error="unparseable answer: no JSON", raw="?") for w in windows]

        def describe(self) -> dict:
            return {"name": self.name}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([Unreadable()], None))
    write_video(tmp_path / "cam.mp4", [i / 5 for i in range(20)])
    args = ["watch", "cam.mp4", "--out", "out", "--gate", "off"]
    result = CliRunner().invoke(cli.app, [*args, "--window", "2", "--stride", "1"])
    assert "streampii: warning: cam.mp4: window 0 (0.00-" in result.output, result.output
    assert "unparseable answer: no JSON" in result.output
    # analysed anew with other windows: the debug folder holds this run's failed windows, not the last run's too
    CliRunner().invoke(cli.app, args)
    windows = json.loads((tmp_path / "out" / "cam.manifest.json").read_text())["counts"]["windows_total"]
    assert len(list((tmp_path / "out" / "cam.debug").iterdir())) == windows


def test_a_fault_of_ours_fails_its_input_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met on one input (here in the analyzer's hands) ended the whole batch with a traceback,
    the inputs after it never run and its manifest left "running": that input fails with the reason,
    its manifest says so, and the others complete."""
    from typer.testing import CliRunner

    from streampii import cli
    from streampii.analyzers import WindowResult

    class Buggy:
        name = "qwen2-vl"

        def analyze(self, windows):
            if any(w.frames[0].image.mean() > 100 for w in windows):  # the bright input's windows
                raise KeyError("frame_size")
            return [WindowResult(w, [], self.name) for w in windows]

        def describe(self) -> dict:
            return {"name": self.name}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([Buggy()], None))
    write_video(
        tmp_path / "bright.mp4", [i / 5 for i in range(20)], draw=lambda i, t: np.full((180, 320, 3), 200, np.uint8)
    )
    write_video(tmp_path / "dark.mp4", [i / 5 for i in range(20)], draw=lambda i, t: np.zeros((180, 320, 3), np.uint8))
    result = CliRunner().invoke(cli.app, ["watch", "bright.mp4", "dark.mp4", "--out", "out", "--gate", "off"])
    assert result.exit_code == 3, result.output
    assert "streampii: error: bright.mp4: internal error: KeyError: 'frame_size' (a bug in streampii" in result.output
    assert "Traceback" in result.output  # (for a report)
    bright = json.loads((tmp_path / "out" / "bright.manifest.json").read_text())
    assert bright["state"] == "failed" and bright["error"] == "internal error: KeyError: 'frame_size'"
    assert bright["finished_at"] is not None
    assert json.loads((tmp_path / "out" / "dark.manifest.json").read_text())["state"] == "complete"


@pytest.mark.parametrize("fault", ["disk full", "state"])
def test_results_that_cannot_be_written_end_that_input_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A full disk (or a state database that cannot be written) while an input's results were being
    written was a traceback that ended the batch, and left ``<stem>.manifest.json.tmp`` behind: now
    that input ends with one line naming it and the reason, and the others go on."""
    import errno
    import sqlite3

    from typer.testing import CliRunner

    from streampii import cli
    from streampii.state import RunState

    if fault == "disk full":  # every file of input a: its log, its manifest (the failed one too)
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith("a."):
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        reason = "a.mp4: cannot write its results in out: No space left on device"
    else:
        real_checkpoint = RunState.checkpoint

        def checkpoint(self, key: str, *args, **kwargs) -> None:
            if key.startswith("a|"):
                raise sqlite3.OperationalError("database or disk is full")
            real_checkpoint(self, key, *args, **kwargs)

        monkeypatch.setattr(RunState, "checkpoint", checkpoint)
        reason = "a.mp4: cannot update out/streampii-state.sqlite: database or disk is full"
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", [i / 5 for i in range(20)])
    result = CliRunner().invoke(cli.app, ["watch", "a.mp4", "b.mp4", "--out", "out", "--vlm", "off"])
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)  # the exit code: no traceback
    assert f"streampii: error: {reason}" in result.output
    assert json.loads((tmp_path / "out" / "b.manifest.json").read_text())["state"] == "complete"
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_frames_without_a_time_of_their_own_are_counted_and_said(tmp_path: Path) -> None:
    """A frame with no timestamp, or the one before's, cannot be written (H.264 needs rising
    times): the redacted video lacked them while the manifest said nothing, and a raw H.264
    stream, none of whose frames has a time, was reported "damaged or cut short"."""
    import av

    mjpeg = write_video(tmp_path / "mjpeg.avi", [i / 10 for i in range(10)], codec="mjpeg")
    twice = tmp_path / "twice.mkv"
    with av.open(str(mjpeg)) as source, av.open(str(twice), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        packets = [p for p in source.demux(video=0) if p.size]
        for i, packet in enumerate(packets):
            packet.pts = packet.dts = [0, 1, 2, 3, 3, 3, 4, 5, 6, 7][i]  # frames 4 and 5 repeat frame 3's time
            packet.time_base, packet.stream = Fraction(1, 10), stream
            out.mux(packet)
    raw = write_video(tmp_path / "camera.h264", [i / 10 for i in range(10)])
    result = run(
        "watch", str(twice), str(raw), "--blur", "--vlm", "off", "--detect", "face", "--out", str(tmp_path / "out")
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    manifest = json.loads((tmp_path / "out" / "twice.manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["decode"]["frames_skipped"] == 2
    assert manifest["redaction"]["frames_written"] == 8
    assert "twice.mkv: 2 frame(s) without a timestamp of their own" in result.stderr
    manifest = json.loads((tmp_path / "out" / "camera.manifest.json").read_text())
    assert manifest["decode"]["frames_skipped"] == 10 and "damaged" not in manifest["error"]
    assert "camera.h264: no frame carries a timestamp" in result.stderr


def test_windows_the_vlm_gave_no_answer_for_make_the_run_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model call that fails (a CUDA error) fails its windows and the run goes on: that must not
    pass for a clean run (exit 0), or a broken GPU leaves audits with holes no scheduler hears of."""
    from typer.testing import CliRunner

    from streampii import cli
    from streampii.analyzers import WindowResult

    class BrokenGpu:
        name = "qwen2-vl"

        def analyze(self, windows):
            error = "model call failed (RuntimeError: CUDA error: an illegal memory access was encountered)"
            return [WindowResult(w, [], self.name, error=error, unanswered=w.index == 1) for w in windows]

        def describe(self) -> dict:
            return {"name": self.name}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([BrokenGpu()], None))
    write_video(tmp_path / "cam.mp4", [i / 5 for i in range(20)])
    result = CliRunner().invoke(
        cli.app, ["watch", "cam.mp4", "--out", "out", "--gate", "off", "--window", "2", "--stride", "1"]
    )
    assert result.exit_code == 3, result.output
    manifest = json.loads((tmp_path / "out" / "cam.manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["error"] == (
        "1 window(s) got no answer from the VLM: model call failed (RuntimeError: CUDA error: an illegal memory"
        " access was encountered)"
    )
    assert "streampii: warning: cam.mp4: 1 window(s) got no answer from the VLM" in result.output


def test_an_out_folder_without_locks_still_takes_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network share without flock (ENOLCK): every input failed as a bug of ours."""
    import errno
    import fcntl

    from streampii.pipeline import WatchOptions, watch

    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = write_video(tmp_path / "a.mp4", [i / 5 for i in range(10)])
    result = watch(str(path), WatchOptions(out=tmp_path / "out"))
    assert result.state == "complete" and (tmp_path / "out" / "a.manifest.json").is_file()


def test_a_no_resume_run_leaves_no_checkpoint_for_a_later_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed run's checkpoint points into its event log. A --no-resume run then rewrote that log
    (here at another --fps), and a later plain run cut it back to the old checkpoint and went on:
    the log began with the --no-resume run's events. That run now starts over."""
    from live_helpers import BrightnessAnalyzer, brightness_draw
    from typer.testing import CliRunner

    from streampii import cli

    class KilledAtWindow12(BrightnessAnalyzer):
        def analyze(self, windows):
            if any(w.index == 12 for w in windows):
                raise KeyboardInterrupt  # aborted (a second Ctrl-C): its checkpoint stays, as after a kill
            return super().analyze(windows)

    analyzer = BrightnessAnalyzer()
    monkeypatch.setattr(cli, "_build_analyzers", lambda options: ([analyzer], None))
    video = write_video(tmp_path / "v.mp4", [i / 5 for i in range(100)], draw=brightness_draw())
    args = ["watch", str(video), "--gate", "off", "--fps", "2", "--window", "2", "--stride", "1", "--out"]
    assert CliRunner().invoke(cli.app, [*args, str(tmp_path / "clean")]).exit_code == 0
    expected = (tmp_path / "clean" / "v.events.jsonl").read_bytes()
    out = str(tmp_path / "out")
    analyzer = KilledAtWindow12()
    assert CliRunner().invoke(cli.app, [*args, out]).exit_code == 130
    analyzer = BrightnessAnalyzer()
    assert CliRunner().invoke(cli.app, [*args, out, "--no-resume", "--fps", "3"]).exit_code == 0
    assert CliRunner().invoke(cli.app, [*args, out]).exit_code == 0
    assert (tmp_path / "out" / "v.events.jsonl").read_bytes() == expected
