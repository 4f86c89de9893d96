"""Chunks decoded side by side (streampii/chunks.py) give exactly the frames one decoder gives."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from videos import write_video

import streampii.chunks as chunking
from streampii.chunks import can_split, keyframe_chunks, sample_in_chunks
from streampii.sampler import SamplerOptions, needed_near_ticks, sample_frames
from streampii.source import DecodeReport, decode_video, describe, open_video


def one_decoder(path: Path, options: SamplerOptions):
    with open_video(str(path)) as container:
        info = describe(container, str(path))
        report = DecodeReport()
        needed = needed_near_ticks(options, info.fps)
        return list(sample_frames(decode_video(container, info, report, needed), options)), report


def side_by_side(path: Path, options: SamplerOptions, workers: int = 2):
    with open_video(str(path)) as container:
        info = describe(container, str(path))
        assert can_split(container, info, options)
        chunks = list(keyframe_chunks(container, info))
        report = DecodeReport()
        frames = list(sample_in_chunks(container, str(path), info, options, report, workers))
        return frames, report, chunks


def assert_same(ours, theirs) -> None:
    assert [f.t for f in ours] == [f.t for f in theirs]
    assert [f.index for f in ours] == list(range(len(ours)))
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a.image, b.image), a.t


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.3])
@pytest.mark.parametrize("name", ["egoblur_gen1_test_video", "intel_car-detection"])
def test_same_frames_as_one_decoder_on_shared_clips(clips: dict[str, Path], name: str, fps: float) -> None:
    options = SamplerOptions(fps=fps)
    expected, expected_report = one_decoder(clips[name], options)
    frames, report, chunks = side_by_side(clips[name], options)
    assert len(chunks) >= 3  # egoblur: B-frames, 8.3 s GOPs; intel_car: P-frames only, 4.8 s GOPs
    assert_same(frames, expected)
    assert (report.frames_decoded, report.last_time, report.error) == (
        expected_report.frames_decoded,
        expected_report.last_time,
        expected_report.error,
    )


def test_open_gop_and_variable_frame_rate(tmp_path: Path) -> None:
    """Frames shown before a keyframe but stored after it (open GOP) belong to the chunk before;
    irregular frame times are picked by timestamp as by one decoder."""
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.02, 0.07, 600))  # about 25 s, 20 to 50 fps
    path = write_video(
        tmp_path / "open_gop.mp4",
        list(times - times[0]),
        draw=lambda i, t: np.full((180, 320, 3), (i * 7 % 256, i * 13 % 256, 90), np.uint8),
        codec_options={"x264-params": "keyint=40:min-keyint=40:scenecut=0:open-gop=1:bframes=3:log-level=error"},
    )
    for fps in (1.0, 3.0):
        options = SamplerOptions(fps=fps)
        expected, _ = one_decoder(path, options)
        frames, _, chunks = side_by_side(path, options)
        assert len(chunks) >= 4
        assert_same(frames, expected)


def test_a_cut_file_ends_where_one_decoder_ends(clips: dict[str, Path], tmp_path: Path) -> None:
    """A file cut in half (its index still promising the rest) gives the frames before the cut."""
    data = clips["intel_car-detection"].read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    options = SamplerOptions(fps=1.0)
    expected, expected_report = one_decoder(cut, options)
    frames, report, _ = side_by_side(cut, options)
    assert_same(frames, expected)
    assert 5 < report.last_time == expected_report.last_time < 25


def test_stopping_early_leaves_no_worker_behind(clips: dict[str, Path]) -> None:
    path = clips["egoblur_gen1_test_video"]
    before = threading.active_count()
    with open_video(str(path)) as container:
        info = describe(container, str(path))
        frames = sample_in_chunks(container, str(path), info, SamplerOptions(fps=1.0), DecodeReport(), 2)
        assert next(frames).t == 0.0
        frames.close()
    assert threading.active_count() == before


def test_watch_decodes_in_chunks_without_blur_and_in_one_pass_with_it(clips: dict[str, Path], tmp_path: Path) -> None:
    import json

    from streampii.pipeline import WatchOptions, watch

    clip = str(clips["intel_car-detection"])
    results = {}
    for blur in (False, True):
        out = tmp_path / f"blur-{blur}"
        watch(clip, WatchOptions(out=out, vlm="off", blur=blur, decode_workers=2))
        manifest = json.loads((out / "intel_car-detection.manifest.json").read_text())
        results[blur] = manifest
    assert results[False]["decode"]["decoders"] == 2
    assert results[True]["decode"]["decoders"] == 1  # the redactor needs every frame, in order
    assert results[False]["counts"]["frames_sampled"] == results[True]["counts"]["frames_sampled"] == 31
    for manifest in results.values():  # stage CPU is the pipeline thread's own: it adds up within it
        timings = manifest["timings"]
        assert sum(timings["stages_cpu"].values()) <= timings["threads_cpu"]["pipeline"] + 0.05
    # the redactor's own work (still tests, tracks, the frames it holds) is a stage of its own
    assert results[True]["timings"]["stages_cpu"]["redact"] > 0 and "redact" not in results[False]["timings"]["stages"]
    assert results[False]["timings"]["threads_cpu"]["decoder"] > 0  # the chunk workers, counted by id


@pytest.mark.parametrize(
    ("cpus", "jobs", "expected"), [(1, 1, 2), (2, 1, 3), (2, 2, 1), (4, 2, 2), (16, 1, 8), (2, 4, 1)]
)
def test_default_workers_one_more_than_cpus_when_alone(monkeypatch, cpus, jobs, expected):
    monkeypatch.setattr(chunking.os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    assert chunking.default_workers(jobs) == expected
