"""Small videos made with PyAV inside tests: known content, known timestamps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    times: Sequence[float],
    size: tuple[int, int] = (320, 180),
    draw: Callable[[int, float], np.ndarray] | None = None,
    codec: str = "libx264",
    rotation: int = 0,
    audio_seconds: float = 0.0,
    time_base: Fraction = Fraction(1, 1000),
    container_options: dict | None = None,
    codec_options: dict | None = None,
) -> Path:
    """Write frames shown at ``times`` (seconds). ``draw(i, t)`` returns an HxWx3 uint8 RGB image."""
    width, height = size
    draw = draw or (lambda i, t: np.full((height, width, 3), (i * 37) % 256, np.uint8))
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=25, options=codec_options or {})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base  # exact timestamps, not rounded to 1/rate
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        if rotation:
            stream.set_display_rotation(rotation)
        audio = None
        if audio_seconds:
            audio = out.add_stream("aac", rate=16000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(draw(i, t), format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            samples = int(audio_seconds * 16000)
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start : start + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = 16000
                frame.pts = start
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        return [float((f.pts - start) * f.time_base) for f in container.decode(stream)]
