"""Windows: group sampled frames into overlapping windows for the VLM.

Qwen2-VL merges two consecutive frames into one temporal patch, so every window holds an
even number of frames and starts on an even frame index: overlapping windows then share
identical frame pairs. The tail of the input always ends up in a window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streampii.errors import check_range
from streampii.sampler import Frame

MAX_WINDOW = 3600.0  # seconds
MAX_WINDOW_FRAMES = 768  # qwen_vl_utils' most frames per video (FPS_MAX_FRAMES); all held in memory


@dataclass(frozen=True)
class WindowOptions:
    window: float = 8.0  # seconds
    stride: float = 6.0  # seconds

    def __post_init__(self) -> None:
        check_range("--window", self.window, 0, MAX_WINDOW, above=True, unit=" s")
        check_range("--stride", self.stride, 0, MAX_WINDOW, above=True, unit=" s")
        if self.stride > self.window:
            raise ValueError(f"--stride ({self.stride}s) larger than --window ({self.window}s) would skip frames")

    def frame_counts(self, fps: float) -> tuple[int, int]:
        """(frames per window, frames per stride), both even and at least 2; ``ValueError`` when a
        window would hold more than ``MAX_WINDOW_FRAMES``."""
        if not self.window * fps <= MAX_WINDOW_FRAMES:
            raise ValueError(
                f"--window {self.window:g} s at --fps {fps:g} is {self.window * fps:g} frames a window:"
                f" at most {MAX_WINDOW_FRAMES} (shorten --window or lower --fps)"
            )
        size = max(2, _even(round(self.window * fps)))
        step = min(size, max(2, _even(round(self.stride * fps))))
        return size, step

    def merge_gap(self, fps: float) -> float:
        """Seconds that may part two findings of one event: the stride, as asked or as the windows
        step once rounded to even frames (``--stride 1`` at ``--fps 0.5`` steps 4 s), whichever is longer."""
        return max(self.stride, self.frame_counts(fps)[1] / fps)


def _even(n: int) -> int:
    return n + (n % 2)


@dataclass(frozen=True, eq=False)
class Window:
    index: int
    frames: tuple[Frame, ...]  # even count; the last frame may repeat to pad the tail

    @property
    def start(self) -> float:
        return self.frames[0].t

    @property
    def end(self) -> float:
        return self.frames[-1].t

    @property
    def first_index(self) -> int:
        return self.frames[0].index


def sliding_windows(frames: Iterable[Frame], options: WindowOptions, fps: float) -> Iterator[Window]:
    """Yield windows of ``size`` frames every ``step`` frames, holding at most one window in memory."""
    size, step = options.frame_counts(fps)
    buffer: deque[Frame] = deque(maxlen=size)
    seen = 0  # frames received
    next_start = 0  # frame index the next window starts at
    covered = 0  # frames already inside an emitted window
    index = 0
    for frame in frames:
        buffer.append(frame)
        seen += 1
        if seen == next_start + size:
            yield Window(index, tuple(buffer))
            index += 1
            covered = seen
            next_start += step
    if seen > covered:
        # tail: frames from the next start (an even index) to the end, padded to even
        tail = [f for f in buffer if f.index >= next_start] or list(buffer)[-1:]
        if len(tail) % 2:
            tail.append(tail[-1])
        yield Window(index, tuple(tail))
