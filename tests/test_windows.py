from __future__ import annotations

import numpy as np
import pytest

from streampii.sampler import Frame
from streampii.windows import WindowOptions, sliding_windows


def frames(n: int, fps: float = 1.0) -> list[Frame]:
    image = np.zeros((28, 28, 3), np.uint8)
    return [Frame(index=i, t=i / fps, image=image, source_size=(28, 28)) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 14, 15, 20, 31, 100])
def test_windows_are_even_start_even_and_cover_everything(n: int) -> None:
    windows = list(sliding_windows(frames(n), WindowOptions(8, 6), fps=1.0))
    covered = {f.index for w in windows for f in w.frames}
    assert covered == set(range(n))
    for w in windows:
        assert len(w.frames) % 2 == 0 and len(w.frames) <= 8
        assert w.first_index % 2 == 0
    assert [w.index for w in windows] == list(range(len(windows)))


def test_defaults_give_eight_frames_every_six() -> None:
    windows = list(sliding_windows(frames(22), WindowOptions(), fps=1.0))
    assert [w.first_index for w in windows] == [0, 6, 12, 18]
    assert [len(w.frames) for w in windows] == [8, 8, 8, 4]
    assert windows[0].start == 0.0 and windows[0].end == 7.0


def test_odd_counts_are_rounded_up_to_even() -> None:
    assert WindowOptions(window=5, stride=3).frame_counts(fps=1.0) == (6, 4)
    assert WindowOptions(window=8, stride=6).frame_counts(fps=2.0) == (16, 12)
    assert WindowOptions(window=0.5, stride=0.5).frame_counts(fps=1.0) == (2, 2)


def test_tail_is_padded_with_the_last_frame() -> None:
    windows = list(sliding_windows(frames(9), WindowOptions(8, 6), fps=1.0))
    tail = windows[-1]
    assert [f.index for f in tail.frames] == [6, 7, 8, 8]


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError):
        WindowOptions(window=4, stride=6)
    with pytest.raises(ValueError):
        WindowOptions(window=0, stride=0)
    with pytest.raises(ValueError, match="--window must be above 0 s"):
        WindowOptions(window=float("inf"))
    with pytest.raises(ValueError, match="8e\\+299 frames a window: at most 768"):  # not an OverflowError later
        WindowOptions(window=8, stride=1).frame_counts(1e299)


def test_findings_a_rounded_stride_apart_are_one_event(tmp_path) -> None:
    """Findings were merged within the stride asked for, not the one the windows take once rounded to
    even frames: at --fps 0.5 and --stride 1 (windows step 4 s, frames 2 s apart) a person in view the
    whole time was one event per frame."""
    from live_helpers import NO_GATE, BrightnessAnalyzer
    from videos import write_video

    from streampii.pipeline import WatchOptions, watch
    from streampii.sampler import SamplerOptions

    path = write_video(
        tmp_path / "bright.mp4", [i / 5 for i in range(100)], draw=lambda i, t: np.full((180, 320, 3), 200, np.uint8)
    )
    options = WatchOptions(
        out=tmp_path / "out", sampler=SamplerOptions(fps=0.5), windows=WindowOptions(window=4, stride=1), gate=NO_GATE
    )
    result = watch(str(path), options, [BrightnessAnalyzer()])
    assert result.state == "complete" and result.events == 1
    assert WindowOptions(window=4, stride=1).merge_gap(0.5) == 4.0 and WindowOptions().merge_gap(1.0) == 6.0
