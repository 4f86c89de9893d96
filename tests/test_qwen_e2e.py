"""Qwen2-VL end to end with the tiny random model: the CLI, batching, and the VLM's error paths.

The tiny model (scripts/make_tiny_qwen2vl.py) answers noise, so its windows usually fail to
parse: that is expected here. What these tests check is the real plumbing: the processor, the
visual token counts, left-padded batches, the manifest, the debug files and the event log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from streampii.sampler import SamplerOptions, sample_frames, smart_resize
from streampii.sinks import event_schema
from streampii.source import decode_video, describe, open_video
from streampii.windows import Window

ROOT = Path(__file__).resolve().parent.parent
STREET = ROOT / "samples" / "street.mp4"  # 640x360, 8 s: two windows at the defaults (8 and 4 frames)


def streampii(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m streampii ARGS`` offline, one torch thread (the 2 cores are shared), no terminal width."""
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    environ.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "streampii", *args], capture_output=True, text=True, cwd=ROOT, env=environ, timeout=300
    )


def expected_tokens(frames: int, height: int, width: int) -> int:
    """Qwen2-VL's visual tokens: frame pairs x (H/28) x (W/28)."""
    assert frames % 2 == 0 and height % 28 == 0 and width % 28 == 0
    return frames // 2 * (height // 28) * (width // 28)


def test_watch_with_tiny_qwen2vl(tiny_qwen2vl: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = streampii(
        "watch",
        str(STREET),
        "--vlm",
        "qwen2-vl",
        "--model",
        str(tiny_qwen2vl),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "64",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    manifest = json.loads((out / "street.manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert [a["analyzer"] for a in manifest["analyzers"]] == ["qwen2-vl"]
    qwen = manifest["analyzers"][0]
    assert qwen["model"] == str(tiny_qwen2vl) and qwen["batch_size"] == 2
    assert manifest["analyzers_note"] is None

    # every sampled frame is on the 28-px grid the sampler computes from the input's size
    settings = manifest["settings"]
    height, width = smart_resize(
        manifest["input"]["height"], manifest["input"]["width"], settings["min_pixels"], settings["max_pixels"]
    )
    assert (height, width) == (280, 504)  # 640x360 at max_pixels 360*420
    windows = manifest["windows"]
    assert [w["frames"] for w in windows] == [8, 4]
    for row in windows:
        assert row["visual_tokens"] == expected_tokens(row["frames"], height, width), row
        assert row["status"] in ("analyzed", "failed"), row
    assert [w["visual_tokens"] for w in windows] == [720, 360]
    counts = manifest["counts"]
    assert counts["windows_total"] == len(windows)
    assert counts["windows_analyzed"] + counts["windows_failed"] == len(windows)
    assert counts["visual_tokens"] == sum(w["visual_tokens"] for w in windows)

    # a window the model's noise could not be parsed for keeps its raw answer for debugging
    debug = out / "street.debug"
    for row in windows:
        files = sorted(debug.glob(f"window-{row['index']:05d}*.txt"))
        if row["status"] == "failed":
            assert row["error"].startswith("unparseable answer"), row
            assert len(files) == 1, row
            assert files[0].read_text(encoding="utf-8").strip(), f"{files[0]} is empty"
        else:
            assert not files

    schema = event_schema()
    lines = (out / "street.events.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines:
        event = json.loads(line)
        jsonschema.validate(event, schema)
        assert event["detector"] == "qwen2-vl"
    assert counts["events"] == len(lines)


@pytest.fixture
def one_thread():
    """One torch thread for the in-process model runs: the machine's cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def street_windows() -> list[Window]:
    """Real sampled frames of street.mp4 in windows of 8, 2 and 4 frames: unequal prompt lengths."""
    container = open_video(str(STREET))
    try:
        info = describe(container, str(STREET))
        frames = list(sample_frames(decode_video(container, info), SamplerOptions()))
    finally:
        container.close()
    return [Window(0, tuple(frames[0:8])), Window(1, tuple(frames[2:4])), Window(2, tuple(frames[4:8]))]


def test_batched_generate_matches_one_window_at_a_time(tiny_qwen2vl: Path, one_thread, monkeypatch) -> None:
    from streampii.analyzers.qwen import load_qwen2vl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = street_windows()
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=1, max_new_tokens=8)
    single = analyzer.analyze(windows)
    analyzer.batch_size = 3
    batched = analyzer.analyze(windows)

    assert analyzer.processor.tokenizer.padding_side == "left"
    for results in (single, batched):
        assert [r.window for r in results] == windows  # one result per window, in order
        assert [r.analyzer for r in results] == ["qwen2-vl"] * 3
    tokens = [expected_tokens(len(w.frames), *w.frames[0].image.shape[:2]) for w in windows]
    assert tokens == [720, 180, 360]
    assert [r.visual_tokens for r in single] == tokens
    assert [r.visual_tokens for r in batched] == tokens
    # left padding: each row of the batch continues at its own end, so greedy answers do not change
    assert [r.raw for r in batched] == [r.raw for r in single]
    assert len({r.raw for r in single}) > 1  # the windows really got different answers


def test_a_static_kv_cache_gives_the_same_answers(tiny_qwen2vl: Path, one_thread, monkeypatch) -> None:
    """--kv-cache static (on CUDA generate then compiles its decoding step; here, on a CPU, only the
    cache changes): the same greedy answers one window at a time and batched, every call with a
    static cache of one rounded length, so windows of a run do not grow it (each growth a compile)."""
    from streampii.analyzers.qwen import load_qwen2vl
    from streampii.errors import AnalyzerError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = street_windows()
    dynamic = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=1, max_new_tokens=8)
    expected = [r.raw for r in dynamic.analyze(windows)]
    static = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=1, max_new_tokens=8, kv_cache="static")
    assert static.describe()["kv_cache"] == "static"
    lengths, rows = [], []
    generate = static.net.generate

    def recorded(**kwargs):
        assert kwargs["cache_implementation"] == "static"
        assert set(kwargs) >= {"input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw"}
        assert not {k for k, v in kwargs.items() if hasattr(v, "shape") and k != "pixel_values_videos"
                    and v.shape[0] != kwargs["input_ids"].shape[0]}  # every per-row input padded alike  # fmt: skip
        output = generate(**kwargs)
        lengths.append(static.net._previous_max_cache_length)  # what transformers sized the cache by
        rows.append(kwargs["input_ids"].shape[0])
        return output

    monkeypatch.setattr(static.net, "generate", recorded)
    assert [r.raw for r in static.analyze(windows)] == expected
    static.batch_size = 3
    assert [r.raw for r in static.analyze(windows)] == expected
    static.batch_size = 4  # 3 windows take 4 rows, the last one repeated: one compiled size, not one per count
    static.pad_static_batches = True  # as on CUDA, where the step is compiled (on a CPU it would be waste)
    assert [r.raw for r in static.analyze(windows)] == expected
    assert rows == [1, 1, 1, 3, 4] and static.kv_cache_error is None
    assert len(set(lengths)) == 1 and lengths[0] % 256 == 0, lengths  # prompts of 180 to 720 visual tokens
    with pytest.raises(AnalyzerError, match="--kv-cache must be one of dynamic, static"):
        load_qwen2vl(str(tiny_qwen2vl), "cpu", kv_cache="paged")


def test_a_warm_up_makes_every_call_size_and_sizes_the_cache_for_any_window(
    tiny_qwen2vl: Path, one_thread, monkeypatch
) -> None:
    """warm_up (before a camera opens) calls generate once for each size a run's calls can take and
    sizes the static cache for the longest window the settings allow: later windows, a 16:9 one with
    more visual tokens than the square blank included, neither grow it nor add a call size."""
    import numpy as np

    from streampii.analyzers.qwen import load_qwen2vl, visual_tokens
    from streampii.sampler import Frame

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    max_pixels = SamplerOptions().max_pixels
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=4, max_new_tokens=4, kv_cache="static")
    analyzer.pad_static_batches = True  # as on CUDA
    calls = []
    generate = analyzer.net.generate

    def recorded(**kwargs):
        output = generate(**kwargs)
        calls.append((kwargs["input_ids"].shape[0], analyzer.net._previous_max_cache_length))
        return output

    monkeypatch.setattr(analyzer.net, "generate", recorded)
    assert analyzer.warm_up(8, max_pixels) > 0
    assert [rows for rows, _ in calls] == [1, 2, 4]
    assert analyzer.describe()["warm_up_seconds"] >= 0
    height, width = smart_resize(720, 1280, SamplerOptions().min_pixels, max_pixels)  # 280x504: 180 a pair
    side = int(np.sqrt(max_pixels)) // 28 * 28
    assert visual_tokens(8, height, width) > visual_tokens(8, side, side)
    wide = Window(7, tuple(Frame(i, 9_999_999.0 + i, np.zeros((height, width, 3), np.uint8), (1280, 720))
                           for i in range(8)))  # fmt: skip
    analyzer.analyze([wide, *street_windows()])
    assert [rows for rows, _ in calls[3:]] == [4]  # 4 windows
    assert len({length for _, length in calls}) == 1, calls  # no growth, no compile after the warm-up

    dynamic = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=4, max_new_tokens=4)
    rows = []
    inner = dynamic.net.generate
    monkeypatch.setattr(dynamic.net, "generate", lambda **kw: rows.append(kw["input_ids"].shape[0]) or inner(**kw))
    dynamic.warm_up(8, max_pixels)
    assert rows == [1]  # CUDA's start-up only: a dynamic cache compiles nothing


def test_a_static_kv_cache_that_cannot_compile_falls_back_to_the_dynamic_one(
    tiny_qwen2vl: Path, one_thread, monkeypatch, caplog
) -> None:
    """Where torch.compile fails (no Triton, no C compiler), the run goes on with the dynamic cache,
    says so once, and the manifest's analyzer section records why."""
    from streampii.analyzers.qwen import load_qwen2vl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = street_windows()
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=3, max_new_tokens=8, kv_cache="static")
    generate, calls = analyzer.net.generate, []

    def compile_fails(**kwargs):
        calls.append(kwargs.get("cache_implementation", "dynamic"))
        if kwargs.get("cache_implementation") == "static":
            raise RuntimeError("backend='inductor' raised:\nCompilationError: no working C compiler")
        return generate(**kwargs)

    monkeypatch.setattr(analyzer.net, "generate", compile_fails)
    with caplog.at_level("WARNING", logger="streampii.qwen"):
        results = analyzer.analyze(windows) + analyzer.analyze(windows)
    assert calls == ["static", "dynamic", "dynamic"]  # given up once, for the rest of the run
    assert len(results) == 6 and all(r.raw for r in results)
    assert analyzer.describe()["kv_cache"] == "dynamic"
    assert analyzer.describe()["kv_cache_error"] == "RuntimeError: backend='inductor' raised:"
    assert sum("--kv-cache static failed" in r.message for r in caplog.records) == 1


def test_the_model_gets_the_processors_own_pixel_values(tiny_qwen2vl: Path, one_thread, monkeypatch) -> None:
    """The analyzer has the processor cut uint8 frames into patches and normalises those after:
    the model must get what the processor alone gives, bit for bit, for every window of a batch."""
    import numpy as np
    import torch

    from streampii.analyzers.qwen import load_qwen2vl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = street_windows()
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=3, max_new_tokens=2)
    given = {}
    generate = analyzer.net.generate
    monkeypatch.setattr(analyzer.net, "generate", lambda **kwargs: given.update(kwargs) or generate(**kwargs))
    analyzer.analyze(windows)

    videos = [np.stack([f.image for f in w.frames]) for w in windows]
    kwargs = {"do_resize": False, "do_sample_frames": False, "cap_pixels_per_frame": False, "return_tensors": "pt"}
    cut = analyzer.processor.video_processor(videos=videos, do_rescale=False, do_normalize=False, **kwargs)
    assert cut["pixel_values_videos"].dtype == torch.uint8  # cut before any arithmetic
    whole = analyzer.processor.video_processor(videos=videos, **kwargs)
    assert given["pixel_values_videos"].dtype == whole["pixel_values_videos"].dtype == torch.float32
    assert torch.equal(given["pixel_values_videos"], whole["pixel_values_videos"])
    assert torch.equal(given["video_grid_thw"], whole["video_grid_thw"])


def test_missing_model_folder_is_one_line_error(tmp_path: Path) -> None:
    proc = streampii("watch", str(STREET), "--vlm", "qwen2-vl", "--model", "/nonexistent", "--out", str(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "/nonexistent" in proc.stderr and "no such folder" in proc.stderr
    assert not list(tmp_path.iterdir()), "nothing is written when the model the user insisted on cannot load"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines


def test_auto_without_gpu_or_cached_weights_runs_without_the_vlm(tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty_cache = tmp_path / "hf-home"
    empty_cache.mkdir()
    proc = streampii(
        "watch",
        str(STREET),
        "--vlm",
        "auto",
        "--model",
        "Qwen/Qwen2-VL-2B-Instruct",
        "--out",
        str(out),
        HF_HOME=str(empty_cache),
        CUDA_VISIBLE_DEVICES="",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "running without the VLM" in proc.stderr
    manifest = json.loads((out / "street.manifest.json").read_text())
    assert manifest["analyzers"] == []
    note = manifest["analyzers_note"]
    assert "no CUDA GPU" in note and "Qwen/Qwen2-VL-2B-Instruct" in note
    assert {w["status"] for w in manifest["windows"]} == {"no_analyzer"}
    # the detectors alone: the sample's faces and plate, nothing the VLM would have said
    events = [json.loads(line) for line in (out / "street.events.jsonl").read_text().splitlines()]
    assert {e["category"] for e in events} == {"face", "license_plate"}
    assert {e["detector"] for e in events} <= {"centerface", "ppocr"}


def test_a_cameras_debug_files_keep_the_latest_only(tmp_path) -> None:
    """A camera has no end: a model that keeps failing wrote a debug file a window for ever."""
    from qwen_helpers import make_window

    from streampii.analyzers import WindowResult
    from streampii.pipeline import _write_debug

    for index in range(5):
        window = make_window([0.0, 1.0], index=index)
        failed = WindowResult(window, [], "qwen2-vl", error="unreadable answer", raw=f"answer {index}")
        _write_debug(tmp_path, "cam", [failed], keep=3)
    answered = WindowResult(make_window([0.0, 1.0], index=5), [], "qwen2-vl")
    _write_debug(tmp_path, "cam", [answered], keep=3)  # no file, none removed
    names = sorted(p.name for p in (tmp_path / "cam.debug").iterdir())
    assert names == [f"window-{i:05d}.qwen2-vl.txt" for i in (2, 3, 4)]


def test_a_window_across_a_resolution_change_is_analysed(tiny_qwen2vl: Path, one_thread, monkeypatch) -> None:
    """A stream that changes resolution (cameras, concatenated TS) gives a window frames of two grid
    sizes: np.stack raised and ended the run with a traceback. The later frames take the first one's size."""
    import numpy as np

    from streampii.analyzers.qwen import load_qwen2vl
    from streampii.sampler import Frame

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wide, tall = np.zeros((280, 504, 3), np.uint8), np.zeros((336, 448, 3), np.uint8)
    frames = [Frame(i, float(i), wide if i < 2 else tall, (640, 360) if i < 2 else (640, 480)) for i in range(4)]
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=1, max_new_tokens=8)
    (result,) = analyzer.analyze([Window(0, tuple(frames))])
    assert result.visual_tokens == expected_tokens(4, 280, 504)
    assert result.raw is not None


def test_a_failing_model_call_fails_its_windows_and_the_run_goes_on(tiny_qwen2vl: Path, one_thread, monkeypatch):
    """Any fault of generate (a CUDA error, a processor's on an odd window) ended the whole command with a
    traceback, every input of a shared call with it: the windows fail with the reason, the others are answered."""
    from streampii.analyzers.qwen import load_qwen2vl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    windows = street_windows()
    analyzer = load_qwen2vl(str(tiny_qwen2vl), "cpu", batch_size=2, max_new_tokens=8)
    generate = analyzer.net.generate

    def faulty(**kwargs):
        if kwargs["pixel_values_videos"].shape[0] >= 4 * 20 * 36:  # a call with the first window (4 frame pairs)
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")
        return generate(**kwargs)

    monkeypatch.setattr(analyzer.net, "generate", faulty)
    results = analyzer.analyze(windows)
    assert [r.window.index for r in results] == [w.index for w in windows]
    assert results[0].error == "model call failed (RuntimeError: CUDA error: an illegal memory access was encountered)"
    assert [r.unanswered for r in results] == [True, False, False]
    assert all(r.raw is not None and not (r.error or "").startswith("model call") for r in results[1:])
