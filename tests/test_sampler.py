"""The sampler: frames picked by timestamp, sized like qwen_vl_utils, streaming."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videos import write_video

from streampii.sampler import Frame, SamplerOptions, sample_frames, smart_resize
from streampii.source import DecodeReport, decode_video, describe, open_video, seconds, to_array


def sample(path: Path, **options) -> list[Frame]:
    container = open_video(str(path))
    with container:
        info = describe(container, str(path))
        return list(sample_frames(decode_video(container, info, DecodeReport()), SamplerOptions(**options)))


@pytest.mark.parametrize(
    "height,width",
    [(1080, 1920), (1080, 608), (270, 480), (432, 768), (720, 1280), (100, 3000), (28, 28), (2160, 3840)],
)
@pytest.mark.parametrize("max_pixels", [360 * 420, 640 * 480, 12_845_056])
def test_smart_resize_matches_qwen_vl_utils(height: int, width: int, max_pixels: int) -> None:
    from streampii._torchvision import ensure_torchvision

    ensure_torchvision()
    from qwen_vl_utils.vision_process import smart_resize as reference

    min_pixels = min(128 * 28 * 28, max_pixels)
    expected = reference(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    assert smart_resize(height, width, min_pixels, max_pixels) == expected


def test_variable_frame_rate_picks_by_timestamp(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.02, 2.5, 3.0, 3.3]
    path = write_video(tmp_path / "vfr.mp4", times)
    frames = sample(path, fps=1.0)
    # nearest frame to each 1 s tick, each frame at most once, times from PTS
    assert [f.t for f in frames] == [0.0, 1.0, 2.5, 3.0]
    assert [f.index for f in frames] == [0, 1, 2, 3]


def test_a_frames_time_is_the_float_of_its_exact_time(tmp_path: Path) -> None:
    """Times come without Fraction arithmetic (per frame, in pure Python) but are the same floats,
    so sampling ticks and window edges fall exactly where they did."""
    rng = np.random.default_rng(0)
    bases = [Fraction(1, 90000), Fraction(1001, 30000), Fraction(1, 12800), Fraction(1, 10)]
    bases += [Fraction(int(n), int(d)) for n, d in rng.integers(1, 10**6, (200, 2))]
    for base in bases:
        for ticks in [0, 1, 3, 7, 299, 90000, 123456789, -3, *rng.integers(0, 10**12, 20).tolist()]:
            assert seconds(ticks, base) == float(ticks * base)
    times = [0.0, 0.1, 0.15, 0.3, 0.9, 1.0, 1.02, 2.5]
    path = write_video(tmp_path / "vfr.mp4", times)
    with open_video(str(path)) as container:
        base, info = container.streams.video[0].time_base, describe(container, str(path))
        decoded = list(decode_video(container, info))
        assert len(decoded) == len(times)
        assert [d.t for d in decoded] == [float(d.frame.pts * base) - info.start_time for d in decoded]


def test_source_slower_than_fps_gives_each_frame_once(tmp_path: Path) -> None:
    path = write_video(tmp_path / "slow.mp4", [0.0, 1.0, 2.0, 3.0])
    assert [f.t for f in sample(path, fps=4.0)] == [0.0, 1.0, 2.0, 3.0]


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    def left_half_red(i: int, t: float) -> np.ndarray:
        image = np.zeros((180, 320, 3), np.uint8)
        image[:, :160] = (255, 0, 0)
        return image

    path = write_video(tmp_path / "rot.mp4", [0.0, 0.5], size=(320, 180), draw=left_half_red, rotation=90)
    frame = sample(path, fps=2.0, max_pixels=320 * 180)[0]
    height, width = frame.image.shape[:2]
    assert height > width and frame.source_size == (180, 320)
    # displayed 90 degrees counter-clockwise, as ffmpeg shows it: the left half ends at the bottom
    assert frame.image[-5:, :, 0].mean() > 200 and frame.image[:5, :, 0].mean() < 50


@pytest.mark.parametrize(
    "codec,suffix",
    [("libx264", "mp4"), ("libx265", "mkv"), ("mpeg4", "avi"), ("mjpeg", "mov"), ("libx264", "ts")],
)
def test_codecs_and_containers(tmp_path: Path, codec: str, suffix: str) -> None:
    time_base = Fraction(1, 90000) if suffix == "ts" else Fraction(1, 1000)
    path = write_video(tmp_path / f"clip.{suffix}", [i / 10 for i in range(40)], codec=codec, time_base=time_base)
    frames = sample(path, fps=2.0)
    # the last frame (3.9 s) is the nearest one to the 4.0 s tick: the tail is not dropped
    assert [round(f.t, 3) for f in frames] == [i / 2 for i in range(8)] + [3.9]
    for frame in frames:
        assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
        assert frame.image.shape[0] % 28 == 0 and frame.image.shape[1] % 28 == 0


def test_matches_fetch_video_on_shared_clips(clips: dict[str, Path]) -> None:
    """Same frame sizes as qwen_vl_utils.fetch_video; frame times differ by design.

    fetch_video spreads floor-to-even(duration x fps) frames evenly from the first to the
    last frame (linspace over frame indices, assuming constant frame rate); streampii takes
    the frame nearest each 1/fps tick by timestamp. So the counts differ by at most two and
    each fetch_video frame lies within one sampling period of a streampii frame.
    """
    from streampii._torchvision import ensure_torchvision

    ensure_torchvision()
    from qwen_vl_utils import fetch_video

    for name in ("intel_car-detection", "egoblur_gen1_test_video", "intel_face-demographics-walking-and-pause"):
        path = clips[name]
        ours = sample(path, fps=1.0, max_pixels=360 * 420)
        video, meta = fetch_video(
            {"video": str(path), "fps": 1.0, "max_pixels": 360 * 420, "min_pixels": 128 * 28 * 28},
            return_video_metadata=True,
        )
        theirs = [i / meta["fps"] for i in meta["frames_indices"]]
        assert tuple(video.shape[2:]) == ours[0].image.shape[:2], name
        assert abs(len(ours) - len(theirs)) <= 2, (name, len(ours), len(theirs))
        ours_t = np.array([f.t for f in ours])
        assert all(np.abs(ours_t - t).min() <= 1.0 for t in theirs), name
        # our times are the frames' own timestamps, within half a source frame of each tick;
        # the last may be the final frame, nearest to a tick at the very end of the video
        assert all(abs(f.t - round(f.t)) <= 0.5 / meta["fps"] + 1e-6 for f in ours[:-1]), name
        assert abs(ours[-1].t - round(ours[-1].t)) <= 1.0 / meta["fps"] + 1e-6, name


def test_memory_is_bounded_by_the_window_not_the_file(tmp_path: Path) -> None:
    """The sampler is a generator: frames arrive before the file has been read to the end."""
    path = write_video(tmp_path / "long.mp4", [i / 25 for i in range(25 * 20)], size=(160, 96))
    container = open_video(str(path))
    with container:
        info = describe(container, str(path))
        report = DecodeReport()
        frames = sample_frames(decode_video(container, info, report), SamplerOptions(fps=1.0))
        first = next(frames)
        assert first.t == 0.0 and report.frames_decoded < 60


def test_ticks_that_fall_between_frames(tmp_path: Path) -> None:
    """12.5 fps sampled at 2 fps: ticks fall between frames; each tick gets one frame."""
    path = write_video(tmp_path / "pal.mp4", [i * 0.08 for i in range(100)])  # 8 s
    frames = sample(path, fps=2.0)
    assert len(frames) == 17  # ticks 0 .. 8 s; the last frame (7.92 s) is nearest to the 8 s tick
    for k, frame in enumerate(frames[:-1]):
        assert abs(frame.t - k / 2) <= 0.04 + 1e-6


def test_skipping_b_frames_picks_the_same_frames(clips: dict[str, Path]) -> None:
    """Decoding only what the ticks need gives exactly the frames a full decode gives."""
    from streampii.sampler import needed_near_ticks

    path = str(clips["egoblur_gen1_test_video"])  # High profile with B-frames
    options = SamplerOptions(fps=1.0)
    runs = []
    for skip in (False, True):
        with open_video(path) as container:
            info = describe(container, path)
            needed = needed_near_ticks(options, info.fps) if skip else None
            report = DecodeReport()
            frames = list(sample_frames(decode_video(container, info, report, needed), options))
            runs.append(([f.t for f in frames], [f.image for f in frames], report.frames_decoded))
    (full_t, full_img, full_n), (skip_t, skip_img, skip_n) = runs
    assert skip_t == full_t
    assert all(np.array_equal(a, b) for a, b in zip(full_img, skip_img, strict=True))
    assert skip_n < full_n * 0.6  # most B-frames were never decoded


def test_dropping_what_could_not_be_picked_changes_nothing() -> None:
    """``could_be_picked`` is exact: ``pick_nearest`` over the kept items (and any extra ones, as
    chunk edges are) gives what it gives over all of them; on regular, jittery, gappy and tied times."""
    from types import SimpleNamespace

    from streampii.sampler import could_be_picked, pick_nearest

    rng = np.random.default_rng(7)
    for trial in range(400):
        fps = float(rng.choice([0.3, 0.5, 1.0, 2.0, 3.0, 10.0]))
        kind = trial % 4
        if kind == 0:  # constant rate, ticks often exactly on frames
            times = np.arange(int(rng.integers(5, 200))) / float(rng.choice([5, 10, 12.5, 25, 30]))
        elif kind == 1:  # jitter
            times = np.cumsum(rng.uniform(0.01, 0.2, int(rng.integers(5, 200))))
        elif kind == 2:  # gaps longer than a tick period
            times = np.cumsum(rng.choice([0.04, 0.04, 0.04, 1.3, 2.7], int(rng.integers(5, 120))))
        else:  # times on a coarse grid: ties between neighbours
            times = np.cumsum(rng.integers(1, 6, int(rng.integers(5, 120))) * 0.1)
        items = [SimpleNamespace(t=float(t)) for t in times]
        kept = [
            item
            for i, item in enumerate(items)
            if rng.random() < 0.05  # chunk edges: kept whatever they are
            or could_be_picked(
                items[i - 1].t if i else None, item.t, items[i + 1].t if i + 1 < len(items) else None, fps
            )
        ]
        assert [x.t for x in pick_nearest(kept, fps)] == [x.t for x in pick_nearest(items, fps)], (trial, fps)


def test_kept_reformatter_gives_what_each_frame_own_gives(tmp_path):
    """One swscale context per thread and use, kept between frames: changes of size and format
    between calls must not leak into the next conversion."""
    rng = np.random.default_rng(3)
    decoded = []
    for width, height in ((320, 180), (200, 120)):
        noise = [rng.integers(0, 255, (height, width, 3), np.uint8) for _ in range(4)]
        clip = write_video(
            tmp_path / f"{width}.mp4", [i / 10 for i in range(4)], (width, height), lambda i, t, noise=noise: noise[i]
        )
        with av.open(str(clip)) as container:
            decoded.append(list(container.decode(video=0)))
    settings = [
        {"format": "rgb24"},
        {"width": 112, "height": 56, "format": "rgb24", "interpolation": "AREA"},
        {"width": 40, "height": 22, "format": "gray", "interpolation": "AREA"},
    ]
    for pair in zip(*decoded, strict=True):  # the size changes at every frame
        for frame in pair:
            for setting in settings:
                assert np.array_equal(to_array(frame, "test", **setting), frame.reformat(**setting).to_ndarray())


def test_small_copy_is_a_full_size_rgb_copy_shrunk_and_starts_no_threads(clips: dict[str, Path]) -> None:
    """The sampler's copy, scaled in 4:2:0 then converted, is within about a grey level of the
    frame converted to full-size RGB and shrunk by INTER_AREA; and swscale works on the calling
    thread (its own threads would cost more CPU than they save, out of the stage timers' sight)."""
    import itertools
    import os

    import cv2

    from streampii.source import to_small_array

    decoded = {}
    for name in ("intel_car-detection", "egoblur_gen1_test_video"):
        with av.open(str(clips[name])) as container:
            decoded[name] = list(itertools.islice(container.decode(video=0), 0, 40, 10))
    # the threads that exist now, by id: one an earlier test left behind may end meanwhile
    threads = set(os.listdir("/proc/self/task"))
    copies = []
    for name, frames in decoded.items():
        for frame in frames:
            height, width = smart_resize(frame.height, frame.width, 128 * 28 * 28, 360 * 420)
            small = to_small_array(frame, "test-small", width, height, "rgb24", "AREA")
            copies.append((name, small, to_array(frame, "test-full", format="rgb24")))
    assert not set(os.listdir("/proc/self/task")) - threads  # none started
    for name, small, full in copies:
        shrunk = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(int) - shrunk).mean() < 1.5, name
