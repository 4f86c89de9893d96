"""Windows built by hand for the Qwen2-VL prompt, parser and merger tests."""

from __future__ import annotations

import numpy as np

from streampii.sampler import Frame
from streampii.windows import Window


def make_window(
    times: list[float], index: int = 0, first: int = 0, source_size: tuple[int, int] = (1920, 1080)
) -> Window:
    """A window whose frames have these presentation times (uneven on purpose) on a 504x280 grid."""
    image = np.zeros((280, 504, 3), np.uint8)
    frames = tuple(Frame(index=first + i, t=t, image=image, source_size=source_size) for i, t in enumerate(times))
    return Window(index, frames)
