"""Small videos made with PyAV inside tests: known content, known timestamps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.context import Flags


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
    sample_aspect_ratio: Fraction | None = None,
    pix_fmt: str | None = None,
    colour: dict[str, int] | None = None,
    fields: str | None = None,
) -> Path:
    """Write frames shown at ``times`` (seconds). ``draw(i, t)`` returns an HxWx3 uint8 RGB image.
    ``colour``: the stream's colour description (``color_range``, ``colorspace``, ``color_primaries``,
    ``color_trc``), also the frames' (converted from RGB with that range and matrix). ``fields``
    ("tff", "bff"): interlaced, coded as fields in that order."""
    width, height = size
    draw = draw or (lambda i, t: np.full((height, width, 3), (i * 37) % 256, np.uint8))
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=25, options=codec_options or {})
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
        for name, value in (colour or {}).items():
            setattr(stream.codec_context, name, value)
        stream.time_base = time_base
        stream.codec_context.time_base = time_base  # exact timestamps, not rounded to 1/rate
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        if rotation:
            stream.set_display_rotation(rotation)
        if sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if fields:
            stream.codec_context.flags |= Flags.interlaced_dct | Flags.interlaced_me
        audio = None
        if audio_seconds:
            audio = out.add_stream("aac", rate=16000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(draw(i, t), format="rgb24")
            for name, value in (colour or {}).items():
                setattr(frame, name, value)
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            if fields:  # only a filter sets a frame's field order in PyAV
                frame = filtered(frame, "setfield", fields)
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


def filtered(frame: av.VideoFrame, name: str, args: str = "") -> av.VideoFrame:
    """``frame`` through FFmpeg's filter ``name`` (its first output frame)."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=frame.time_base)
    graph.link_nodes(source, graph.add(name, args), graph.add("buffersink"))
    graph.configure()
    graph.push(frame)
    return graph.pull()


def first_field(frame: av.VideoFrame) -> str:
    """Which field of an interlaced ``frame`` is shown first: "top" or "bottom"."""
    grey = frame.to_ndarray(format="gray")
    first = filtered(frame, "separatefields").to_ndarray(format="gray")
    return "top" if np.array_equal(first, grey[0::2]) else "bottom" if np.array_equal(first, grey[1::2]) else "?"


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        return [float((f.pts - start) * f.time_base) for f in container.decode(stream)]


def write_with_audio(
    path: Path, audio_codec: str, layout: str = "mono", seconds: float = 2.0, rate: int = 8000
) -> np.ndarray:
    """A small MPEG-4 video with one audio stream of ``audio_codec``, in the container ``path``'s
    suffix names; the sound is noise (no period: a shift in time shows). Returns its samples,
    channels x samples float32."""
    rng = np.random.default_rng(3)
    channels = av.AudioLayout(layout).nb_channels
    sound = (0.3 * rng.standard_normal((channels, int(seconds * rate)))).clip(-1, 1).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=12)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream(audio_codec, rate=rate)
        audio.layout = layout
        for i in range(int(seconds * 12)):
            image = np.full((120, 160, 3), (i * 37) % 256, np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        for start in range(0, sound.shape[1], 1024):
            # packed: PyAV's planar frames take at most 8 channels (AVFrame.data)
            part = sound[:, start : start + 1024].T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="flt", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return sound
