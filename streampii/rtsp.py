"""Live cameras: read ``rtsp://`` with PyAV, stamp frames with wall-clock time, reconnect, record.

A reader thread owns the connection: it demuxes and decodes as fast as the camera sends,
so a slow analyzer never stalls the socket (the camera would drop us) and recording never
falls behind. Decoded frames go through a small queue; when analysis is slower than real
time the newest frames are dropped and counted, instead of memory growing without bound.

Time: ``t`` continues across reconnects and includes the outage, so ``wall_base + t`` is
the wall-clock time of every frame and ``LiveSource.wall_clock`` maps event times to UNIX
time. Credentials in the URL never leave this module unredacted.
"""

from __future__ import annotations

import errno
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av

from streampii.errors import InputError, check_range
from streampii.sinks import Latest
from streampii.source import NO_FRAMES, DecodedFrame, DecodeReport, VideoInfo, describe, redact_url, seconds
from streampii.writer import partial_path

log = logging.getLogger("streampii.rtsp")

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://")
# codecs the mp4 muxer takes as they come from a camera; others are left out of recordings
_MP4_AUDIO = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac"})
_END = object()
# A camera runs for weeks: its manifest lists the latest outages and recorded files, counting the
# older ones (with --segment-seconds 10, a week's names alone were 60,000)
LIVE_LIST_ROWS = 600


def is_live(source: str) -> bool:
    return source.lower().startswith(LIVE_SCHEMES)


class StopFlag(threading.Event):
    """Set on Ctrl-C / SIGTERM; the reader and the pipeline check it and finish cleanly.
    A ``threading.Event`` (what ``pipeline.watch(stop=...)`` takes) that remembers why."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        super().set()


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[StopFlag]:
    """First SIGINT/SIGTERM sets ``stop`` (finish the window, write everything final);
    a second SIGINT raises KeyboardInterrupt as usual. Main thread only."""
    previous = {}

    def handler(signum, _frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class LiveOptions:
    open_timeout: float = 10.0  # seconds to connect and read the stream header
    read_timeout: float = 10.0  # seconds without data before the stream counts as dropped
    transport: str = "tcp"  # RTP over the RTSP TCP connection: no UDP loss, passes NAT
    reconnect: bool = True
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_outage: float | None = 600.0  # give up after this long without a stream; None = never
    queue_frames: int = 32  # decoded frames buffered between reader and analysis
    record_dir: Path | None = None  # record the stream here while analysing
    segment_seconds: float = 300.0
    record_name: str = "{stem}_%Y%m%dT%H%M%S"  # strftime part as ffmpeg -strftime 1 writes it (local time)
    record_format: str = "mp4"
    ffmpeg_options: dict[str, str] = field(default_factory=dict)  # extra demuxer options

    def __post_init__(self) -> None:
        check_range("--timeout", self.open_timeout, 0, 3600, above=True, unit=" s")
        check_range("--timeout", self.read_timeout, 0, 3600, above=True, unit=" s")
        check_range("--segment-seconds", self.segment_seconds, 0, 86400, above=True, unit=" s")
        check_range("backoff_initial", self.backoff_initial, 0, 3600, unit=" s")
        check_range("backoff_max", self.backoff_max, 0, 3600, unit=" s")
        if self.max_outage is not None:
            check_range("max_outage", self.max_outage, 0, 7 * 86400, unit=" s")
        check_range("queue_frames", self.queue_frames, 1, 10_000)

    def av_options(self) -> dict[str, str]:
        options = {
            "rtsp_transport": self.transport,
            "timeout": str(int(self.read_timeout * 1_000_000)),  # socket I/O timeout, microseconds
            "analyzeduration": "1000000",  # 1 s of probing: cameras state their codec in the SDP
        }
        options.update(self.ffmpeg_options)
        return options


@dataclass
class Gap:
    """An outage: stream time and wall-clock time when it was lost and when it came back."""

    start: float
    end: float | None
    wall_start: float
    wall_end: float | None
    reason: str
    attempts: int = 0

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "wall_start": round(self.wall_start, 3),
            "wall_end": None if self.wall_end is None else round(self.wall_end, 3),
            "reason": self.reason,
            "attempts": self.attempts,
        }


class _Permanent(InputError):
    """A refusal that retrying will not fix (wrong credentials, no such stream, no video)."""


def connect(url: str, options: LiveOptions) -> av.container.InputContainer:
    """Open a live stream or raise ``InputError`` with a reason a user can act on."""
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    url = scheme.lower() + sep + rest  # FFmpeg knows its protocols by lower-case name alone (RTSP://...)
    started = time.monotonic()
    try:
        container = av.open(url, options=options.av_options(), timeout=(options.open_timeout, options.read_timeout))
    except av.error.HTTPUnauthorizedError:
        raise _Permanent(shown, "authentication failed (401): wrong or missing user name or password") from None
    except av.error.HTTPForbiddenError:
        raise _Permanent(shown, "access forbidden (403)") from None
    except av.error.HTTPNotFoundError:
        raise _Permanent(shown, "no such stream on the server (404): check the path") from None
    except av.error.ConnectionRefusedError:
        raise InputError(shown, "connection refused: nothing listens at that host and port") from None
    except (av.error.FFmpegError, OSError) as exc:
        if time.monotonic() - started >= options.open_timeout * 0.9 or isinstance(exc, av.error.ExitError):
            raise InputError(
                shown, f"no answer within {options.open_timeout:g}s (host unreachable or not an RTSP server)"
            ) from None
        if getattr(exc, "errno", None) == errno.EIO and not _resolves(url):
            # FFmpeg says why (a name it could not resolve) only in its log, which is off
            raise InputError(shown, "cannot resolve the host name: check the host in the URL") from None
        message = getattr(exc, "strerror", None) or str(exc)
        raise InputError(shown, redact_url(str(message)).rstrip(".").lower()) from None
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        container.close()
        raise _Permanent(shown, f"has no video stream (streams: {kinds})")
    return container


def _resolves(url: str) -> bool:
    """False when the URL's host name does not resolve (True when that cannot be told)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True
    if not host:
        return True
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    except OSError:
        return True
    return True


class SegmentRecorder:
    """Remuxes the camera's packets (no re-encode) into files of about ``segment_seconds``, each
    starting at a video keyframe and named by its local start time (as ffmpeg's segment muxer
    with ``-strftime 1`` names them); each connection starts a new file. The start time is the
    wall time of the file's first frame as the live source's clock maps it (``clock``, which
    events use too), not when its first packet arrived: a connection's first packets arrive in
    a burst, after FFmpeg's probing, which named its first file about a second late.

    A file is written as ``<name>.partial`` and renamed to ``<name>`` once closed: a muxer
    buffers, so a quiet camera's open file may not change for many seconds, and a folder reader
    (``streampii segments --watch``) must never take it for a finished one. A killed run leaves
    the ``.partial`` file. A file that cannot be written or finished (folder removed, disk full)
    is counted in ``errors``; the next segment tries again, recreating the folder."""

    def __init__(self, directory: Path, stem: str, options: LiveOptions, label: str = "camera") -> None:
        self.directory = directory
        self.stem = stem
        self.options = options
        self.label = label  # names the camera in warnings (its URL without credentials)
        self.recorded: Latest[str] = Latest(LIVE_LIST_ROWS)  # the latest files this recorder finished
        self.packets = 0
        self.packets_skipped = 0  # packets the muxer refused (a bad timestamp): the file goes on
        self.errors = 0  # files that could not be written or finished
        self.last_error: str | None = None
        self._failing = False  # warned about the current run of failures: once, not per file
        self._streams: dict[int, av.stream.Stream] = {}  # the connection's streams that are recorded
        self._out: av.container.OutputContainer | None = None
        self._path: Path | None = None
        self._map: dict[int, av.stream.Stream] = {}
        self._offsets: dict[int, int] = {}  # per stream: the file's start, in that stream's ticks
        self._start: tuple[int, Fraction] | None = None  # the file's first keyframe: pts, time base
        self._base: float | None = None  # the connection's first keyframe, seconds: cuts at base + k x segment
        self._next_cut = 0.0
        # a packet's time (seconds) -> UNIX time, set by the live source for each connection; None
        # while unknown (its first frame not decoded yet)
        self.clock: Callable[[float], float | None] | None = None
        self._first: float | None = None  # the file's first keyframe, seconds
        # a connection's first keyframe when FFmpeg gave it no timestamp (its RTSP demuxer does), and
        # the packets after it: held until the next video packet times it, not dropped with the whole
        # first GOP (up to seconds of frames that were analysed live but in no file)
        self._held: list[av.Packet] = []

    def start(self, container: av.container.InputContainer) -> None:
        """A new connection: its first file starts at its first keyframe (a file must start decodable)."""
        self.stop()
        video = container.streams.video[0]
        self._streams = {video.index: video}
        for audio in container.streams.audio[:1]:
            if self.options.record_format != "mp4" or audio.codec_context.name in _MP4_AUDIO:
                self._streams[audio.index] = audio
        self._base, self._held = None, []

    def write(self, packet: av.Packet) -> None:
        if packet.stream.index not in self._streams:
            return
        video = packet.stream.type == "video"
        untimed = packet.dts is None and packet.pts is None
        if untimed and video and packet.is_keyframe and self._base is None:
            self._held = [packet]
            return
        if self._held and (untimed or not video):
            self._held.append(packet)
            if len(self._held) > 1000:  # video never timed: not recorded, as before, nor held without end
                self._held = []
            return
        if self._held:  # the untimed keyframe: one frame before this packet
            keyframe, *after = self._held
            self._held = []
            rate = packet.stream.guessed_rate
            step = keyframe.duration or packet.duration or (round(1 / (rate * packet.time_base)) if rate else 1)
            keyframe.pts = keyframe.dts = (packet.dts if packet.dts is not None else packet.pts) - step
            for held in (keyframe, *after):
                self.write(held)
        if packet.dts is None:
            return
        pts = packet.pts if packet.pts is not None else packet.dts
        if packet.stream.type == "video" and packet.is_keyframe:
            t = seconds(pts, packet.time_base)
            if self._base is None or t >= self._next_cut:
                self._cut(t, pts, packet.time_base)
        if self._out is None:
            return
        source, old = packet.stream, (packet.pts, packet.dts, packet.time_base)
        offset = self._offset(source.index, packet.time_base)
        packet.pts, packet.dts = pts - offset, packet.dts - offset  # each file starts at 0
        packet.stream = self._map[source.index]
        try:
            self._out.mux(packet)
            self.packets += 1
        except av.error.FFmpegError as exc:
            if isinstance(exc, OSError):  # the file cannot be written: this segment is lost
                self._fail(f"cannot write {self._path.name}: {exc.strerror or exc}")
            else:  # a bad packet must not end the recording
                self.packets_skipped += 1
                log.debug("recording: packet skipped: %s", exc)
        finally:
            packet.stream = source  # the packet is decoded after this, in its own times
            packet.pts, packet.dts, packet.time_base = old

    def stop(self) -> None:
        """Close and rename the current file (a connection's end, or the run's)."""
        if self._out is None:
            return
        out, written = self._out, self._path
        self._out = None
        wall = self.clock(self._first) if self.clock is not None and self._first is not None else None
        # named now: by the time the file ends, its first frame has been decoded and mapped
        path = self._free_path(time.localtime(wall), written) if wall is not None else written
        try:
            out.close()  # writes the index (moov atom)
            partial_path(written).rename(path)
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(f"cannot finish {path.name}: {getattr(exc, 'strerror', None) or exc}")
            return
        self.recorded.append(path.name)
        if self._failing:
            self._failing = False
            log.warning("%s: recording again (%s)", self.label, path.name)

    def _cut(self, t: float, pts: int, time_base: Fraction) -> None:
        """End the current file at this keyframe and start the next one (also after a failed one)."""
        self.stop()
        if self._base is None:
            self._base = t
        segment = self.options.segment_seconds
        self._next_cut = self._base + (int((t - self._base) / segment) + 1) * segment
        self._start, self._offsets, self._first = (pts, time_base), {}, t
        path = self._free_path(time.localtime())  # until the file's first frame is mapped (stop())
        try:
            self.directory.mkdir(parents=True, exist_ok=True)  # again: it may have been removed
            out = av.open(str(partial_path(path)), mode="w", format=self.options.record_format)
            self._map = {i: out.add_stream_from_template(s) for i, s in self._streams.items()}
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(f"cannot create {path.name}: {getattr(exc, 'strerror', None) or exc}")
            return
        self._out, self._path = out, path

    def _free_path(self, when: time.struct_time, own: Path | None = None) -> Path:
        """The file's name for a start time: never one that is taken (another run's, this one's;
        ``own``: the name the file is being written under, free for it)."""
        name = time.strftime(self.options.record_name.format(stem=self.stem), when)
        path = self.directory / f"{name}.{self.options.record_format}"
        n = 2
        while path != own and (path.exists() or partial_path(path).exists() or path.name in self.recorded):
            path, n = self.directory / f"{name}-{n}.{self.options.record_format}", n + 1  # never overwrite
        return path

    def _offset(self, index: int, time_base: Fraction) -> int:
        offset = self._offsets.get(index)
        if offset is None:
            pts, base = self._start
            offset = self._offsets[index] = round(pts * base / time_base)
        return offset

    def _fail(self, reason: str) -> None:
        """This file is lost (a ``.partial`` may stay); the next segment tries again."""
        self.errors += 1
        self.last_error = reason
        if self._out is not None:
            out, self._out = self._out, None
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass
        if not self._failing:
            self._failing = True
            log.warning("%s: recording failed: %s; trying again at the next segment", self.label, reason)


CONNECT_THREAD = "streampii-connect"


def connecting() -> bool:
    """Whether a camera's connection attempt given up at a stop is still inside FFmpeg (``LiveSource._connect``)."""
    return any(t.name == CONNECT_THREAD and t.is_alive() for t in threading.enumerate())


class LiveSource:
    """One live camera. ``open()`` connects (errors are ``InputError``), ``frames()`` streams
    ``DecodedFrame``s until the stop flag, a permanent error, or ``max_outage``."""

    def __init__(
        self, url: str, options: LiveOptions | None = None, stop: threading.Event | None = None, stem: str = "camera"
    ) -> None:
        self.url = url
        self.shown = redact_url(url)
        self.options = options or LiveOptions()
        self.stop = stop or StopFlag()
        self.gaps: Latest[Gap] = Latest(LIVE_LIST_ROWS)  # the latest outages
        self.reconnects = 0
        self.frames_dropped = 0
        self.wall_base: float | None = None  # UNIX time of t = 0
        record_dir = self.options.record_dir
        self.recorder = SegmentRecorder(record_dir, stem, self.options, self.shown) if record_dir else None
        self._container: av.container.InputContainer | None = None
        self._connected_at = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.options.queue_frames))
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._last_t = -1.0
        self._halt = threading.Event()  # our own end (consumer gone), distinct from the user's stop

    def open(self) -> VideoInfo:
        self._connected_at = time.time()  # the camera starts sending at PLAY, inside connect()
        self._container = self._connect()
        if self._container is None:  # stopped while connecting: a run without frames, ended cleanly
            return VideoInfo(self.shown, 0, 0, "", None, None, None, 0, 0.0, False, live=True)
        return describe(self._container, self.url, live=True)

    def wall_clock(self, t: float) -> float:
        return (self.wall_base if self.wall_base is not None else self._connected_at) + t

    def frames(self, report: DecodeReport | None = None) -> Iterator[DecodedFrame]:
        report = report if report is not None else DecodeReport()
        if self._container is None:
            self.open()
        self._thread = threading.Thread(target=self._read_forever, name="streampii-rtsp", daemon=True)
        self._thread.start()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.25)
                except queue.Empty:
                    if self.stop.is_set() and not self._thread.is_alive():
                        break
                    continue
                if item is _END:
                    break
                report.frames_decoded += 1
                report.last_time = item.t
                yield item
        finally:
            self._halt.set()
            self._thread.join(timeout=self.options.read_timeout + 5)
            report.error = report.error or self._error
            # stopped before the first frame (still connecting): a clean stop, not a broken stream
            if report.frames_decoded == 0 and report.error is None and not self.stop.is_set():
                report.error = NO_FRAMES

    def close(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=self.options.read_timeout + 5)
        if self._container is not None:
            self._container.close()
            self._container = None

    def summary(self) -> dict:
        """Facts for the manifest."""
        return {
            "url": self.shown,
            "wall_base": self.wall_base,
            "reconnects": self.reconnects,
            "gaps": [g.to_dict() for g in self.gaps],
            "gaps_omitted": self.gaps.omitted,
            "frames_dropped": self.frames_dropped,
            "recorded": list(self.recorder.recorded) if self.recorder else [],
            "recorded_omitted": self.recorder.recorded.omitted if self.recorder else 0,
            "recording_errors": self.recorder.errors if self.recorder else 0,
            "recording_error": self.recorder.last_error if self.recorder else None,
            "stopped_by": getattr(self.stop, "reason", None) or ("stop" if self.stop.is_set() else None),
        }

    # -- reader thread ------------------------------------------------------------------

    def _read_forever(self) -> None:
        try:
            container, connected_at = self._container, self._connected_at
            while container is not None:
                reason = self._read_session(container, connected_at)
                container.close()
                self._container = None
                if self.recorder:
                    self.recorder.stop()
                if self._stopping():
                    break
                if not self.options.reconnect:
                    self._error = f"stream lost: {reason}"
                    break
                container, connected_at = self._reconnect(reason)
        except Exception as exc:  # noqa: BLE001 - the reader must always hand over _END
            self._error = redact_url(f"reader failed: {exc}")
            log.exception("%s: reader failed", self.shown)
        finally:
            if self.recorder:
                self.recorder.stop()
            self._put(_END, block=True)

    def _read_session(self, container: av.container.InputContainer, connected_at: float) -> str:
        """Read one connection until it ends; returns why it ended."""
        video = container.streams.video[0]
        video.codec_context.thread_type = "AUTO"
        streams = [video] + (list(container.streams.audio[:1]) if self.recorder else [])
        if self.wall_base is None:
            self.wall_base = connected_at
        # t continues in real time across reconnects: the outage is part of the timeline
        offset = max(connected_at - self.wall_base, self._last_t + 1e-3) if self._last_t >= 0 else 0.0
        first_pts: float | None = None
        if self.recorder:
            self.recorder.start(container)
            # a recorded file is named by its first frame's wall time, as this connection maps frames
            self.recorder.clock = lambda s: None if first_pts is None else self.wall_base + offset + s - first_pts
        last_pts = None
        try:
            for packet in container.demux(streams):
                if self._stopping():
                    return "stopped"
                if self.recorder:
                    self.recorder.write(packet)
                if packet.stream.type != "video":
                    continue
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in frames:
                    if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                        continue
                    last_pts = frame.pts
                    shown = seconds(frame.pts, frame.time_base or video.time_base)
                    first_pts = shown if first_pts is None else first_pts
                    t = offset + shown - first_pts
                    if t <= self._last_t:
                        continue
                    self._last_t = t
                    item = DecodedFrame(t=t, frame=frame, extra={"wall_time": self.wall_base + t})
                    if not self._put(item, block=False):
                        self.frames_dropped += 1
        except av.error.FFmpegError as exc:
            return redact_url(getattr(exc, "strerror", None) or str(exc)).lower()
        return "stream ended"

    def _reconnect(self, reason: str) -> tuple[av.container.InputContainer | None, float]:
        gap = Gap(start=max(self._last_t, 0.0), end=None, wall_start=time.time(), wall_end=None, reason=reason)
        self.gaps.append(gap)
        log.warning("%s: stream lost at %.1fs (%s); reconnecting", self.shown, gap.start, reason)
        delay = self.options.backoff_initial
        while not self._stopping():
            outage = time.time() - gap.wall_start
            if self.options.max_outage is not None and outage > self.options.max_outage:
                self._error = f"stream lost at {gap.start:.1f}s and not back within {self.options.max_outage:g}s"
                return None, 0.0
            if self._sleep(delay):
                break
            gap.attempts += 1
            connected_at = time.time()
            try:
                container = self._connect()
            except _Permanent as exc:
                self._error = f"reconnect refused: {exc.reason}"
                return None, 0.0
            except InputError as exc:
                log.info("%s: reconnect attempt %d failed: %s", self.shown, gap.attempts, exc.reason)
                delay = min(delay * 2, self.options.backoff_max)
                continue
            gap.wall_end = time.time()
            gap.end = max(connected_at - (self.wall_base or connected_at), self._last_t)
            self.reconnects += 1
            log.warning(
                "%s: stream back after %.1fs (%d attempts)", self.shown, gap.wall_end - gap.wall_start, gap.attempts
            )
            return container, connected_at
        return None, 0.0

    def _connect(self) -> av.container.InputContainer | None:
        """``connect()``, given up (None) as soon as a stop is requested: FFmpeg's own wait for a
        camera that does not answer (up to --timeout) cannot be interrupted, so it runs on a
        thread of its own, which closes what it opens after being given up."""
        if self._stopping():
            return None
        lock, outcome = threading.Lock(), []
        done = threading.Event()

        def attempt() -> None:
            try:
                result = (connect(self.url, self.options), None)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                result = (None, exc)
            with lock:
                if outcome:  # given up: nobody takes this container
                    if result[0] is not None:
                        result[0].close()
                    return
                outcome.append(result)
            done.set()

        threading.Thread(target=attempt, name=CONNECT_THREAD, daemon=True).start()
        while not done.wait(0.1):
            if self._stopping():
                with lock:
                    if not outcome:
                        outcome.append((None, None))
                        return None
        container, error = outcome[0]
        if error is not None:
            raise error
        return container

    def _stopping(self) -> bool:
        return self.stop.is_set() or self._halt.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early (True) on stop."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping():
                return True
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self._stopping()

    def _put(self, item: object, block: bool) -> bool:
        if block:
            while True:  # the consumer may be gone: never hang the reader forever
                try:
                    self._queue.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    if self._stopping():
                        try:
                            self._queue.get_nowait()  # make room for _END
                        except queue.Empty:
                            pass
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False


def live_frames(
    url: str,
    options: LiveOptions | None = None,
    report: DecodeReport | None = None,
    stop: threading.Event | None = None,
) -> Iterator[DecodedFrame]:
    """Frames of a live stream, reconnecting as needed; ``extra["wall_time"]`` is UNIX time."""
    source = LiveSource(url, options, stop)
    source.open()
    try:
        yield from source.frames(report)
    finally:
        source.close()
