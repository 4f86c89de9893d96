"""Write a redacted video: H.264 frames with the input's own timestamps, the input's audio.

Audio is read from the input by a second demuxer and muxed interleaved with the video by time,
so memory holds a few packets, not a track. A stream whose codec MP4 holds is copied packet for
packet; PCM (G.711 included), which players cannot play from MP4, and codecs MP4 cannot hold
(ADPCM...) are decoded and encoded to AAC, with their own timestamps.
"""

from __future__ import annotations

import glob
import io
import re
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
from av.codec.context import Flags

from streampii.source import seconds

# Audio packets read ahead to find each stream's first one for the MP4 test (20 s of AAC).
FIRST_PACKETS = 1000
# The most channels FFmpeg's AAC encoder takes (7.1); a stream with more is mixed down to mono.
AAC_CHANNELS = 8
# libx264's presets, fastest first (x264_preset_names in x264.h); anything else fails only when the encoder opens
X264_PRESETS = tuple("ultrafast superfast veryfast faster fast medium slow slower veryslow placebo".split())


def mp4_takes(stream: av.audio.AudioStream, packet: av.Packet | None) -> bool:
    """Whether an MP4 holds ``stream``'s packets unchanged: FFmpeg's own muxer is asked, on a
    throwaway file in memory, to write the stream's header and ``packet`` (its first) and close.

    FFmpeg's list of the codecs MP4 holds is not enough alone: the muxer decides on the stream's
    parameters, some only at the end, writing the index, so one packet tells. PCM is never copied
    though the muxer takes it: it writes it as ``ipcm``/``fpcm`` (ISO/IEC 23003-5), which few
    players decode (FFmpeg 5.1 among them)."""
    if stream.codec_context.name.startswith("pcm_"):
        return False
    try:
        with av.open(io.BytesIO(), "w", format="mp4") as probe:
            copy = probe.add_stream_from_template(stream)
            if packet is not None:
                packet.stream = copy
                probe.mux(packet)
    except (ValueError, av.error.FFmpegError):  # PyAV: ValueError for a codec MP4 does not list
        return False
    return True


def _first_packets(source: str) -> dict[int, av.Packet]:
    """The first packet of each audio stream of ``source``, read on a demuxer of its own."""
    first: dict[int, av.Packet] = {}
    with av.open(source) as container:
        audio = list(container.streams.audio)
        for n, packet in enumerate(container.demux(*audio)):
            if packet.size and packet.stream.index not in first:
                first[packet.stream.index] = packet
            if len(first) == len(audio) or n >= FIRST_PACKETS:
                break
    return first


def partial_path(path: Path) -> Path:
    """Where the file for ``path`` is written until it is closed: ``<name>.partial`` beside it, a
    name no folder listing takes for a video (a reader never sees a half-written file)."""
    return path.with_name(path.name + ".partial")


def clip_path(path: Path, number: int) -> Path:
    """Where ``--clips`` writes clip ``number`` (from 1) of the video meant for ``path``."""
    return path.with_name(f"{path.name.removesuffix('.mp4')}.clip{number:03d}.mp4")


def _clips(path: Path, suffix: str = "") -> list[Path]:
    """The files in ``path``'s folder named as ``clip_path`` names clips, with ``suffix``: no other file."""
    stem = path.name.removesuffix(".mp4")
    name = re.compile(rf"{re.escape(stem)}\.clip[0-9]{{3,}}\.mp4{re.escape(suffix)}")
    return [p for p in path.parent.glob(f"{glob.escape(stem)}.clip*.mp4{suffix}") if name.fullmatch(p.name)]


def remove_partials(path: Path) -> None:
    """Remove what a killed run left unfinished of ``path`` and of its clips (``--clips``)."""
    for stale in [partial_path(path), *_clips(path, ".partial")]:
        stale.unlink(missing_ok=True)


def remove_others(path: Path, kept: Iterable[Path]) -> None:
    """Remove the redacted outputs for ``path`` that an earlier run left and this one did not write:
    its whole video after a run with ``--clips``, or clips after one without, or more of them than
    this run has. A stale file beside a run's outputs would pass for one of them (with the masks of
    other settings, or of PII stretches this run's manifest does not list)."""
    names = {p.name for p in kept}
    for old in [path, *_clips(path)]:
        if old.name not in names:
            old.unlink(missing_ok=True)


class _AacEncoder:
    """One audio stream MP4 cannot hold, decoded and encoded to AAC as its packets come; one of
    more than ``AAC_CHANNELS`` mixed down to mono first (``downmixed``)."""

    def __init__(self, template: av.audio.AudioStream, out: av.container.OutputContainer) -> None:
        self.decoder = template.codec_context
        rates = av.Codec("aac", "w").audio_rates or ()
        rate = template.rate if template.rate in rates else 48000
        channels = template.channels
        self.downmixed = channels > AAC_CHANNELS
        self._mix: av.filter.Graph | None = None
        if self.downmixed:
            # every channel at the same weight: their order is mostly unnamed, and FFmpeg's resampler
            # downmixes only the channel counts it has a layout for (none for 9 or 11), dropping some
            # channels (LFE, top)
            self._mix = av.filter.Graph()
            pan = self._mix.add("pan", "mono|c0<" + "+".join(f"c{i}" for i in range(channels)))
            self._mix.link_nodes(self._mix.add_abuffer(template=template), pan, self._mix.add("abuffersink"))
            self._mix.configure()
            channels = 1
        self.stream = out.add_stream("aac", rate=rate)
        # FFmpeg's usual layout for the channel count, one AAC holds (PCM from AVI names none)
        self.stream.layout = f"{channels}c"
        # 64 kb/s a channel, at most what an AAC frame holds (6 bits a sample and channel)
        self.stream.bit_rate = min(64_000, 6 * rate) * channels

    def encode(self, packet: av.Packet | None, shift: float) -> list[av.Packet]:
        """AAC packets for ``packet`` (None: the rest, at the end), ``shift`` seconds earlier."""
        try:
            frames = self.decoder.decode(packet)
        except av.error.InvalidDataError:
            return []  # a damaged packet is skipped, as FFmpeg's own transcoding does
        if self._mix is not None:
            frames = self._mixed(frames, end=packet is None)
        packets = []
        for frame in frames:
            if shift and frame.pts is not None:
                frame.pts -= round(shift / frame.time_base)
            packets += self.stream.encode(frame)
        if packet is None:
            packets += self.stream.encode(None)
        return packets

    def _mixed(self, frames: list[av.AudioFrame], end: bool) -> list[av.AudioFrame]:
        mixed = []
        for frame in [*frames, None] if end else frames:
            self._mix.push(frame)
            while True:
                try:
                    mixed.append(self._mix.pull())
                except (av.error.BlockingIOError, av.error.EOFError):
                    break
        return mixed


class AudioCopier:
    """Copies the audio of ``source`` into ``out`` up to a time, streaming: each stream's
    packets unchanged where MP4 holds its codec (``mp4_takes``), else encoded to AAC."""

    def __init__(self, source: str, out: av.container.OutputContainer) -> None:
        first = _first_packets(source)
        self._input = av.open(source)
        audio = list(self._input.streams.audio)
        self._streams: dict[int, av.stream.Stream] = {}
        self._encoders: dict[int, _AacEncoder] = {}
        # where the audio starts (seconds, as in the input; None: unstated): it may lead the picture
        starts = [seconds(s.start_time, s.time_base) for s in audio if s.start_time is not None and s.time_base]
        self.start = min(starts, default=None)
        self.reencoded: list[str] = []  # codecs of the streams encoded to AAC
        self.downmixed: list[str] = []  # those of more channels than AAC holds, mixed to mono
        try:
            for s in audio:
                if mp4_takes(s, first.get(s.index)):
                    self._streams[s.index] = out.add_stream_from_template(s)
                else:
                    self._encoders[s.index] = encoder = _AacEncoder(s, out)
                    self.reencoded.append(s.codec_context.name)
                    if encoder.downmixed:
                        self.downmixed.append(f"{s.codec_context.name}: {s.channels} channels to mono")
        except BaseException:
            self._input.close()
            raise
        self._packets = self._input.demux(*audio) if audio else iter(())
        self._pending: av.Packet | None = None

    @property
    def count(self) -> int:
        return len(self._streams) + len(self._encoders)

    def copy_until(
        self,
        until: float | None,
        out: av.container.OutputContainer | None,
        offset: float = 0.0,
        start: float | None = None,
    ) -> None:
        """Mux packets whose time (seconds, as in the input) is below ``until`` (None: all).

        With ``out`` None they are dropped (stretches outside clips), and so are those before
        ``start`` (a clip's first frame; None: none); ``offset`` seconds are taken off their
        timestamps (the output starts at zero).
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
            if out is None or (start is not None and t < start):
                continue
            encoder = self._encoders.get(packet.stream.index)
            if encoder is not None:
                out.mux(encoder.encode(packet, offset))
                continue
            shift = round(offset / packet.time_base)
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self._streams[packet.stream.index]
            out.mux(packet)

    def flush(self, out: av.container.OutputContainer, offset: float = 0.0) -> None:
        """Mux what the AAC encoders still hold (at the end of the output)."""
        for encoder in self._encoders.values():
            out.mux(encoder.encode(None, offset))

    def close(self) -> None:
        self._input.close()


def keep_colour(target: av.video.codeccontext.VideoCodecContext | av.VideoFrame, frame: av.VideoFrame) -> None:
    """Give the encoder (or a frame made anew for it) ``frame``'s colour description (range, matrix,
    primaries, transfer), which x264 writes into the H.264 headers: untagged, a player guesses
    (limited range, BT.601 or BT.709 by size) and shows full-range, BT.709, BT.2020 or HDR pictures
    in other colours. Frames of another pixel format (10-bit) are converted with the same range and
    matrix, so the tags hold."""
    target.color_range = frame.color_range
    target.colorspace = frame.colorspace
    target.color_primaries = frame.color_primaries
    target.color_trc = frame.color_trc


class VideoWriter:
    """One H.264 output file; frames keep their input pts less ``offset`` seconds, and so does the
    audio, from ``audio_from`` seconds on (a clip's start). With ``audio_from`` None all of the audio
    is written, and where it starts before ``offset`` the output starts there instead, the picture
    after it, as in the input (and as ffmpeg shifts a file: by its earliest stream's start).
    ``colour``: a frame of the input, whose colour description the output keeps (``keep_colour``);
    ``interlaced``: the input's frames are interlaced, and so are the output's."""

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
        audio_from: float | None = None,
        sample_aspect_ratio: Fraction | None = None,
        colour: av.VideoFrame | None = None,
        interlaced: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # written under a name of its own, renamed once closed: a killed run leaves no unplayable
        # file (no index yet) under the final name
        self.partial = partial_path(self.path)
        self._out = av.open(str(self.partial), "w", format="mp4")
        self.audio: AudioCopier | None = None
        try:
            self._stream = self._out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
            # the input's time base, so that every pts is written exactly as read (VFR included)
            self._stream.time_base = time_base
            self._stream.codec_context.time_base = time_base
            if sample_aspect_ratio:  # non-square pixels: shown at the input's shape, not squeezed
                self._stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
            if colour is not None:
                keep_colour(self._stream.codec_context, colour)
            if interlaced:  # coded as fields, each frame in the order it states: a player deinterlaces, no combs
                self._stream.codec_context.flags |= Flags.interlaced_dct | Flags.interlaced_me
            self.audio = AudioCopier(audio_source, self._out) if audio_source else None
        except BaseException:
            self.abandon()
            raise
        if audio_from is None and self.audio is not None and self.audio.start is not None:
            offset = min(offset, self.audio.start)
        self.time_base = time_base
        self.offset = offset
        self.audio_from = audio_from
        self._offset_pts = round(offset / time_base)
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
            self.audio.copy_until(t, self._out, self.offset, self.audio_from)

    def close(self, audio_until: float | None = None) -> None:
        self._out.mux(self._stream.encode(None))
        if self.audio is not None:
            self.audio.copy_until(audio_until, self._out, self.offset, self.audio_from)
            self.audio.flush(self._out, self.offset)
            self.audio.close()
        self._out.close()
        self.partial.replace(self.path)

    def abandon(self) -> None:
        """Give the file up after a failure: closed as far as it goes, and removed."""
        for close in (self.audio.close if self.audio else None, self._out.close):
            if close is not None:
                try:
                    close()
                except Exception:  # the failure that led here is the one reported
                    pass
        self.partial.unlink(missing_ok=True)
