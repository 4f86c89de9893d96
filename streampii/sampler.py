"""Sampler: pick frames at ``fps`` by presentation timestamp and resize them to the Qwen grid.

Only the picked frames are converted: each is scaled, then turned into RGB, by swscale
(``source.to_small_array``, whose contexts last from frame to frame), never converted
to full-size RGB first. Memory holds one decoded frame and the one before it, whatever the
length of the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from streampii.errors import check_range
from streampii.source import DecodedFrame, to_small_array

GRID = 28  # Qwen2-VL: 14-pixel patches merged 2x2
MAX_ASPECT_RATIO = 200
MAX_FPS = 1000.0  # above any video's frame rate: each frame is picked at most once
MAX_PIXELS = 16384 * GRID * GRID  # qwen_vl_utils' largest image (IMAGE_MAX_TOKEN_NUM tokens)
T = TypeVar("T")


@dataclass(frozen=True)
class SamplerOptions:
    fps: float = 1.0
    max_pixels: int = 360 * 420
    min_pixels: int = 128 * GRID * GRID  # qwen_vl_utils' minimum for video frames

    def __post_init__(self) -> None:
        check_range("--fps", self.fps, 0, MAX_FPS, above=True)
        check_range("--max-pixels", self.max_pixels, GRID * GRID, MAX_PIXELS)
        if self.min_pixels > self.max_pixels:
            object.__setattr__(self, "min_pixels", self.max_pixels)


@dataclass(frozen=True, eq=False)
class Frame:
    """A sampled frame: uint8 HxWx3 RGB on the Qwen grid, upright, with its own timestamp."""

    index: int  # position among the sampled frames of this input
    t: float  # seconds from the start of the input (presentation timestamp)
    image: np.ndarray
    source_size: tuple[int, int]  # (width, height) of the upright original frame
    wall_time: float | None = None  # live sources: UNIX time the frame arrived

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = GRID) -> tuple[int, int]:
    """(height, width) as ``qwen_vl_utils.smart_resize`` gives them: multiples of ``factor``
    within ``[min_pixels, max_pixels]``, aspect ratio kept as closely as possible."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio above {MAX_ASPECT_RATIO}: {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def needed_near_ticks(options: SamplerOptions, source_fps: float | None) -> Callable[[float], bool] | None:
    """A ``decode_video(needed=...)`` predicate: True within 3/4 of a source frame of a tick.

    The frame nearest each tick is always within half a source frame of it (constant frame
    rate; the rest is slack for jittery timestamps), so skipping non-reference frames
    elsewhere never changes which frames are picked.
    Returns None (decode everything) when the source frame rate is unknown.
    """
    if not source_fps or source_fps <= options.fps:
        return None
    period, margin = 1.0 / options.fps, 0.75 / source_fps

    def needed(t: float) -> bool:
        offset = t % period
        return offset <= margin or period - offset <= margin

    return needed


def sample_frames(decoded: Iterable[DecodedFrame], options: SamplerOptions) -> Iterator[Frame]:
    """Yield the decoded frame nearest to each tick of ``options.fps``, resized for Qwen2-VL.

    Ticks are at k / fps seconds. Each frame is picked at most once, so a source slower than
    ``fps`` gives its own frames without duplicates, and variable frame rate is handled
    because only timestamps are read.
    """
    for index, picked in enumerate(pick_nearest(decoded, options.fps)):
        yield to_frame(picked, index, options)


def pick_nearest(items: Iterable[T], fps: float) -> Iterator[T]:
    """The items (anything with a time ``t``, in time order) nearest to each tick of ``fps``."""
    period = 1.0 / fps
    tick = 0
    previous: T | None = None
    previous_taken = False
    for current in items:
        target = tick * period
        if current.t < target:
            previous, previous_taken = current, False
            continue
        # current is the first item at or past the tick: take it or the one before it
        if previous is not None and not previous_taken and target - previous.t < current.t - target:
            yield previous
            tick = max(tick + 1, math.floor(previous.t / period + 1e-9) + 1)
            if current.t < tick * period:
                previous, previous_taken = current, False
                continue
        yield current
        tick = max(tick + 1, math.floor(current.t / period + 1e-9) + 1)
        previous, previous_taken = current, True
    if previous is not None and not previous_taken and previous.t >= tick * period - period / 2:
        yield previous


def could_be_picked(before: float | None, t: float, after: float | None, fps: float) -> bool:
    """Whether ``pick_nearest`` could pick an item at ``t`` whose neighbours are at ``before`` and
    ``after`` seconds (None: not known). Only the first item at or after a tick can, or the last
    before a tick when it is strictly nearer to it than the next; dropping every other item
    changes nothing, so decoders working apart need only pass these on. Ticks are computed as
    ``pick_nearest`` computes them, so equal times compare the same way."""
    if before is None or after is None:
        return True
    period = 1.0 / fps
    k = max(0, math.floor(before / period) - 1)
    while k * period <= after:
        target = k * period
        if before < target and not t < target:
            return True  # the first item at or after this tick
        if t < target:  # the first tick after t: t is the last item before it
            return target - t < after - target
        k += 1
    return False


def to_frame(decoded: DecodedFrame, index: int, options: SamplerOptions) -> Frame:
    """The decoded frame upright, scaled and converted to RGB by swscale."""
    frame = decoded.frame
    sideways = decoded.rotation in (90, 270)
    upright_w, upright_h = (frame.height, frame.width) if sideways else (frame.width, frame.height)
    height, width = smart_resize(upright_h, upright_w, options.min_pixels, options.max_pixels)
    coded_w, coded_h = (height, width) if sideways else (width, height)
    rgb = to_small_array(frame, "sample", coded_w, coded_h, "rgb24", "AREA")
    if decoded.rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=decoded.rotation // 90))
    return Frame(
        index=index,
        t=round(decoded.t, 6),
        image=rgb,
        source_size=(upright_w, upright_h),
        wall_time=decoded.extra.get("wall_time"),
    )
