"""Write a redacted video: H.264 frames with the input's own timestamps, audio packets copied.

Audio is never decoded: its packets are read from the input by a second demuxer and muxed
unchanged, interleaved with the video by time, so memory holds a few packets, not a track.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from streampii.source import seconds


class AudioCopier:
    """Copies the audio packets of ``source`` into ``out``, up to a time, streaming."""

    def __init__(self, source: str, out: av.container.OutputContainer) -> None:
        self._input = av.open(source)
        audio = list(self._input.streams.audio)
        self._streams = {s.index: out.add_stream_from_template(s) for s in audio}
        self._packets = self._input.demux(*audio) if audio else iter(())
        self._pending: av.Packet | None = None

    @property
    def count(self) -> int:
        return len(self._streams)

    def copy_until(self, until: float | None, out: av.container.OutputContainer | None, offset: float = 0.0) -> None:
        """Mux packets whose time (seconds, as in the input) is below ``until`` (None: all).

        With ``out`` None they are dropped (stretches outside clips); ``offset`` seconds are
        taken off their timestamps (clips start at zero).
        """
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's empty flush packet
            t = seconds(packet.pts if packet.pts is not None else packet.dts, packet.time_base)
            if until is not None and t >= until:
                self._pending = packet
                return
            if out is None or (offset and t < offset):  # (negative times at 0: the codec's priming packets)
                continue
            shift = round(offset / packet.time_base)
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._streams[packet.stream.index]
            out.mux(packet)

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """One H.264 output file; frames keep their input pts (less ``offset_pts`` for clips)."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction | None,
        pix_fmt: str = "yuv420p",
        crf: int = 20,
        preset: str = "veryfast",
        audio_source: str | None = None,
        offset: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.path), "w", format="mp4")
        self._stream = self._out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        # the input's time base, so that every pts is written exactly as read (VFR included)
        self._stream.time_base = time_base
        self._stream.codec_context.time_base = time_base
        self.time_base = time_base
        self.offset = offset
        self._offset_pts = round(offset / time_base)
        self.audio = AudioCopier(audio_source, self._out) if audio_source else None
        self.frames = 0
        self.first: float | None = None
        self.last: float | None = None

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts = pts - self._offset_pts
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE  # let x264 choose; decoded types would force I/P/B
        t = seconds(pts, self.time_base)
        self.first = t if self.first is None else self.first
        self.last = t
        self._out.mux(self._stream.encode(frame))
        self.frames += 1
        if self.audio is not None:
            self.audio.copy_until(t, self._out, self.offset)

    def close(self, audio_until: float | None = None) -> None:
        self._out.mux(self._stream.encode(None))
        if self.audio is not None:
            self.audio.copy_until(audio_until, self._out, self.offset)
            self.audio.close()
        self._out.close()
