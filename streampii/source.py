"""Inputs: expand folders, open a video with PyAV, describe it, decode its frames.

Everything a user can get wrong about an input is turned into an ``InputError`` here, so
that later stages only ever see a container with a decodable video stream.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.plane import VideoPlane
from av.video.reformatter import VideoReformatter

from streampii.errors import InputError

# what a folder's videos are named: MP4 and QuickTime (phones: .3gp), Matroska, AVI, MPEG-TS, MPEG-PS
# (camcorders, TV and DVD recordings), Flash and Windows Media (older cameras), MXF (broadcast)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".ts", ".mts", ".m2ts", ".webm", ".3gp"}
    | {".mpg", ".mpeg", ".vob", ".flv", ".wmv", ".asf", ".mxf"}
)
NO_FRAMES = "no frame could be decoded"
# (a stream copy into a container keeps a raw stream's B-frames out of order: ffmpeg must decode it)
NO_TIMESTAMPS = "no frame carries a timestamp (a raw elementary stream?): convert it first, e.g. ffmpeg -i IN OUT.mp4"
# this tool's own videos in its --out folder (pipeline, redactor): <stem>.redacted.mp4, the --clips
# files <stem>.redacted.clipNNN.mp4, and a writer's temporary name (a ".partial" suffix)
_OWN_OUTPUT = re.compile(r"\.redacted(\.clip\d+)?(\.partial)?\.mp4(\.partial)?$|\.partial$")
# From ``scheme://`` to the LAST "@" on the line: FFmpeg takes the last "@" of the authority, and a
# password may hold "@", "/" or spaces, where no parser can tell where the authority ends. Masking
# a path's "@" too (or all up to a later URL's) hides more than needed, never less.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://).*@")
# A query parameter whose name suggests a credential (?user=admin&password=..., the form of Dahua,
# Amcrest and many NVRs; ?token=, ?api_key=, ?sig=): its value is masked. Names are matched by
# part and case-insensitively, so that "passwd", "access_token" or "X-Amz-Signature" are caught too:
# masking a harmless value costs nothing, showing a secret does.
_QUERY_CREDENTIALS = re.compile(
    r"(?P<name>[?&;][^=&#\s]*(?:user|usr|login|pass|pwd|token|auth|key|secret|sig|cred)[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """Hide ``user:password@`` and the values of credential query parameters (``?password=``) in
    any URL inside ``text`` (logs, manifests, errors, output names): every URL shown or turned into
    a name goes through here."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _QUERY_CREDENTIALS.sub(r"\g<name>***", text)


def is_url(source: str) -> bool:
    return "://" in source


@dataclass(frozen=True)
class VideoInfo:
    """Facts about an input, as the container states them (before any decoding)."""

    source: str
    width: int  # displayed size: rotation metadata already applied
    height: int
    codec: str
    fps: float | None  # average frame rate; time always comes from timestamps, not from this
    duration: float | None  # seconds, None for live streams
    frames: int | None
    rotation: int  # degrees counter-clockwise to display the coded picture upright
    start_time: float  # seconds of the first presentation timestamp, subtracted from every time
    has_audio: bool
    live: bool = False
    # width / height of a displayed pixel (anamorphic DV, broadcast: not 1), None where unstated
    sample_aspect_ratio: Fraction | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class DecodeReport:
    """What decoding actually found; filled while frames stream, read at the end."""

    frames_decoded: int = 0
    last_time: float | None = None
    decode_errors: int = 0
    # frames decoded without a timestamp, or with one not past the frame before (a duplicate): left
    # out, since a time is never invented; the redacted video lacks them (H.264 needs rising times)
    frames_skipped: int = 0
    error: str | None = None  # the error that ended decoding early, if any
    decoders: int = 1  # decoders that worked side by side on keyframe chunks (streampii.chunks)

    def truncated(self, info: VideoInfo) -> bool:
        """True when decoding stopped well before the duration the container announced."""
        if self.error is not None:
            return True
        if info.duration is None or self.last_time is None:
            return self.frames_decoded == 0
        frame_time = 1.0 / info.fps if info.fps else 0.1
        return self.last_time < info.duration - max(1.0, 3 * frame_time)


def is_own_output(path: Path, out: Path | None) -> bool:
    """True for a video this tool wrote (or is writing) into its output folder ``out``: a folder
    that holds its outputs must not feed them back in as inputs."""
    return out is not None and _OWN_OUTPUT.search(path.name) is not None and path.parent.resolve() == out.resolve()


def expand_inputs(items: list[str], out: Path | None = None) -> list[str | InputError]:
    """Folders become the videos inside them (sorted), less this tool's own outputs in ``out``;
    URLs and files pass through. An input named twice (directly, through a folder, another
    spelling of its path, a symlink) is kept once, where it first appears: twice, it would be
    processed twice into the same outputs."""
    expanded: list[str | InputError] = []
    seen: set[str | Path] = set()

    def add(source: str) -> None:
        if (error := name_error(source)) is not None:
            expanded.append(error)
            return
        try:
            key = source if is_url(source) else Path(source).resolve()
        except (OSError, RuntimeError):  # a symlink loop (Python 3.11 raises RuntimeError, 3.13 OSError)
            expanded.append(InputError(source, "symbolic link loop (too many levels of symbolic links)"))
            return
        if key not in seen:
            seen.add(key)
            expanded.append(source)

    for item in items:
        path = Path(item)
        if is_url(item) or not path.is_dir():
            add(item)
            continue
        videos = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not is_own_output(p, out)
        )
        if not videos:
            expanded.append(InputError(item, "folder holds no video files (" + ", ".join(sorted(VIDEO_SUFFIXES)) + ")"))
        for video in videos:
            add(str(video))
    return expanded


def name_error(source: str) -> InputError | None:
    """The error for a path whose name is no UTF-8 (bytes Python holds as surrogate escapes): the
    state's keys, the manifest's JSON and the event log take none, and it ended the whole run."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        shown = source.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        return InputError(shown, "file name is not valid UTF-8: rename the file")
    return None


def open_video(
    source: str, options: dict[str, str] | None = None, timeout: float | None = None
) -> av.container.InputContainer:
    """Open ``source`` for decoding or raise an ``InputError`` that says why it cannot be read."""
    shown = redact_url(source)
    if not is_url(source):
        path = Path(source)
        if not path.exists():
            raise InputError(shown, "no such file")
        if path.is_dir():
            raise InputError(shown, "is a folder")
        if not path.is_file():  # a pipe is read once: the rotation peek and chunked decoding read a file again
            raise InputError(shown, "not a regular file (a pipe, socket or device): give a video file")
        if path.stat().st_size == 0:
            raise InputError(shown, "file is empty (0 bytes)")
    try:
        container = av.open(source, options=options or {}, timeout=timeout)
    except av.error.FileNotFoundError:
        raise InputError(shown, "no such file") from None
    except av.error.InvalidDataError:
        raise InputError(shown, "not a video file, or damaged beyond reading (no container header)") from None
    except av.error.FFmpegError as exc:
        raise InputError(shown, ffmpeg_reason(exc)) from None
    if not container.streams.video:
        container.close()
        raise InputError(shown, "has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise InputError(shown, "video stream has an unknown codec")
    return container


def ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's error as one lower-case line, any URL credentials hidden."""
    message = getattr(exc, "strerror", None) or str(exc)
    return redact_url(str(message)).rstrip(".").lower()


def describe(container: av.container.InputContainer, source: str, live: bool = False) -> VideoInfo:
    """Read the container's own facts about its first video stream."""
    stream = container.streams.video[0]
    rotation = 0 if live else _first_frame_rotation(source)
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
        width, height = height, width
    rate = stream.average_rate or stream.guessed_rate
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    duration = None
    if not live:
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
            if "matroska" in container.format.name:
                # the segment's duration is its longest stream's (sound or subtitles may outlast the
                # picture: not a video cut short); FFmpeg, mkvmerge and OBS tag each track's own end
                duration = _tag_seconds(stream.metadata.get("DURATION")) or duration
                # both run from timestamp 0, not from the first frame
                duration = max(round(duration - start, 6), 0.0)
    aspect = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio or None
    if aspect and rotation in (90, 270):
        aspect = 1 / aspect  # the displayed frame is the coded one turned
    return VideoInfo(
        source=redact_url(source),
        width=width,
        height=height,
        codec=stream.codec_context.name,
        fps=float(rate) if rate else None,
        duration=duration,
        frames=stream.frames or None,
        rotation=rotation,
        start_time=start,
        has_audio=bool(container.streams.audio),
        live=live,
        sample_aspect_ratio=aspect,
    )


def _tag_seconds(tag: str | None) -> float | None:
    """Seconds of a Matroska duration tag ("00:00:02.958000000"), None where absent or unreadable."""
    try:
        hours, minutes, secs = (tag or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(secs)
    except ValueError:
        return None


def _first_frame_rotation(source: str) -> int:
    """Rotation of the first frame, read through a second, short-lived container.

    PyAV exposes the display matrix on frames, not on streams; peeking at one frame of a
    file is cheap and leaves the main container untouched.
    """
    try:
        with av.open(source) as peek:
            for frame in peek.decode(video=0):
                return _rotation_degrees(frame.rotation)
    except (av.error.FFmpegError, AttributeError):
        return 0
    return 0


def _rotation_degrees(rotation: float | int | None) -> int:
    # PyAV reports the counter-clockwise angle that displays the frame upright
    return int(round((rotation or 0) / 90.0)) % 4 * 90


@dataclass
class DecodedFrame:
    """A frame straight from the decoder, still in its native pixel format and size."""

    t: float  # seconds from the start of the input, from the presentation timestamp
    frame: av.VideoFrame
    rotation: int = 0
    extra: dict = field(default_factory=dict)


def decode_video(
    container: av.container.InputContainer,
    info: VideoInfo,
    report: DecodeReport | None = None,
    needed: Callable[[float], bool] | None = None,
    threads: int = 0,
) -> Iterator[DecodedFrame]:
    """Decode the first video stream, streaming, with times from PTS.

    ``needed(t)`` says whether a frame shown at ``t`` may be used; for packets where it is
    False the decoder skips non-reference frames (B-frames, mostly), which nothing else
    depends on: a sampler at 1 fps then decodes a fraction of a typical file's frames.
    A damaged stream ends the iteration instead of raising: ``report.error`` says why, and
    the frames before the damage have been yielded. ``threads``: decoder threads (0: FFmpeg's
    choice); it takes effect on the container's first decode.
    """
    report = report if report is not None else DecodeReport()
    stream = container.streams.video[0]
    if not stream.codec_context.is_open:  # a container decoded again after a seek keeps its settings
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
    time_base = stream.time_base
    frame_base = None  # the decoder's frames' time base, read once: PyAV builds a Fraction per read
    last_pts = None
    try:
        for packet in container.demux(stream):
            if needed is not None and packet.pts is not None:
                packet_time = seconds(packet.pts, time_base) - info.start_time
                stream.codec_context.skip_frame = "DEFAULT" if needed(packet_time) else "NONREF"
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                report.decode_errors += 1  # one corrupt packet: skip it, as ffmpeg does
                continue
            for frame in frames:
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None or (last_pts is not None and pts <= last_pts):
                    report.frames_skipped += 1  # no usable timestamp, or a duplicate: never invent a time
                    continue
                last_pts = pts
                if frame_base is None:
                    frame_base = frame.time_base or time_base
                t = seconds(pts, frame_base) - info.start_time
                report.frames_decoded += 1
                report.last_time = t
                rotation = _frame_rotation(frame, info.rotation)
                yield DecodedFrame(t=max(t, 0.0), frame=frame, rotation=rotation)
    except av.error.FFmpegError as exc:
        report.error = ffmpeg_reason(exc)
    if report.frames_decoded == 0 and report.error is None:
        report.error = NO_TIMESTAMPS if report.frames_skipped else NO_FRAMES


def every_frame_threads(cpus: int) -> int:
    """FFmpeg threads for decoding every frame of a file (for the redactor) on ``cpus`` CPUs.

    Frame threads decode the same frames for 20-55% more CPU than one thread. Where cores would
    otherwise idle they buy time (16 cores: ``--blur`` runs 22-40% faster); on 2, x264 and the
    detectors keep both busy and they buy nothing (docs/performance.md). 0: FFmpeg's choice.
    """
    return 1 if cpus <= 2 else 0


def seconds(ticks: int, time_base: Fraction) -> float:
    """``float(ticks * time_base)``, the same float (one correctly rounded division of the same
    integers) without the Fraction arithmetic, which costs 10-20 us a frame in pure Python."""
    return ticks * time_base.numerator / time_base.denominator


def _frame_rotation(frame: av.VideoFrame, default: int) -> int:
    rotation = getattr(frame, "rotation", None)
    return default if rotation is None else _rotation_degrees(rotation)


_reformatters = threading.local()
PLANAR_420 = ("yuv420p", "yuvj420p")  # 8-bit 4:2:0, the formats most cameras and files decode to


def to_array(frame: av.VideoFrame, use: str, **reformat: object) -> np.ndarray:
    """``frame.reformat(**reformat).to_ndarray()`` through this thread's reformatter for ``use``.

    swscale's context then lasts from frame to frame while the sizes stay the same; a frame's own
    ``reformat`` builds a new one every time (720p: 0.27-0.37 ms against 0.19 for a 1/8-size grey
    copy, 0.42-0.45 against 0.37 for full-size RGB). One thread: PyAV otherwise splits each call
    across swscale threads, which for these sizes cost 1.4 to 2 times the CPU of one thread, and
    on threads that no stage timer sees.
    """
    return to_frame(frame, use, **reformat).to_ndarray()


def to_frame(frame: av.VideoFrame, use: str, **reformat: object) -> av.VideoFrame:
    """``frame.reformat(**reformat)`` as ``to_array`` does it: a frame with ``frame``'s properties
    (timestamp, colour description, field order)."""
    return _reformatter(use).reformat(frame, threads=1, **reformat)


def to_small_array(
    frame: av.VideoFrame, use: str, width: int, height: int, format: str, interpolation: str
) -> np.ndarray:
    """``to_array`` for a picture much smaller than the frame: a 4:2:0 frame is scaled in 4:2:0
    first, then converted. swscale's one call scales to RGB at full chroma resolution: 2.5 times
    the CPU (1280x720 to about 500x290 RGB: 0.6-0.8 ms against 1.7-1.9), and no closer to a full-size
    RGB copy shrunk by INTER_AREA (within 1.1 grey levels on average either way)."""
    if frame.format.name not in PLANAR_420 or (width, height) == (frame.width, frame.height):
        return to_array(frame, use, width=width, height=height, format=format, interpolation=interpolation)
    small = _reformatter(f"{use}/scale").reformat(
        frame, width=width, height=height, interpolation=interpolation, threads=1
    )
    return _reformatter(use).reformat(small, format=format, threads=1).to_ndarray()


def to_planes(frame: av.VideoFrame, use: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame as three uint8 HxW planes R, G, B.

    From 8-bit 4:2:0 frames 16 pixels wide or a multiple, swscale's planar RGB (gbrp), viewed in
    place: cheaper than packed RGB (720p: 0.24-0.28 against 0.42-0.47 ms), and the planes are what a
    model with a 1x3xHxW input casts from without a transpose. Other frames get the packed copy
    split: swscale 9.5's gbrp leaves garbage in the last columns of other widths (642 wide: up to
    255 levels off) and takes a different, coarser path from other pixel formats.
    """
    if frame.format.name not in PLANAR_420 or frame.width % 16:
        r, g, b = cv2.split(to_array(frame, use, format="rgb24"))
        return r, g, b
    planar = _reformatter(use).reformat(frame, format="gbrp", threads=1)
    g, b, r = (plane_array(plane, planar.width, planar.height) for plane in planar.planes)
    return r, g, b


def plane_array(plane: VideoPlane, width: int, height: int) -> np.ndarray:
    """A plane's pixels as a (height, width) view, without its row padding."""
    rows = np.frombuffer(plane, np.uint8)[: height * plane.line_size].reshape(height, plane.line_size)
    return rows[:, :width]


def _reformatter(use: str) -> VideoReformatter:
    kept = _reformatters.__dict__
    reformatter = kept.get(use)
    if reformatter is None:
        reformatter = kept[use] = VideoReformatter()
    return reformatter
