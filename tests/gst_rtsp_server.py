"""A real RTSP server on loopback for tests: GStreamer's RTSP server (Debian packages).

Run with the SYSTEM python (``/usr/bin/python3``), since ``gi`` comes from ``python3-gi``:

    /usr/bin/python3 tests/gst_rtsp_server.py --port 0 [--auth user:pass] [--audio-only] [--file x.mp4]

Prints ``READY <port>`` on stdout once clients can connect, then serves until killed.
Needs: gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args: argparse.Namespace) -> str:
    if args.audio_only:
        # a stream with no video track at all: one PCMA audio track
        return "( audiotestsrc is-live=true ! audioconvert ! audioresample ! alawenc ! rtppcmapay name=pay0 pt=8 )"
    if args.file:
        # a real file, re-encoded so that the stream starts with a keyframe and has SPS/PPS in-band
        return (
            f'( filesrc location="{args.file}" ! decodebin ! videoconvert ! videorate ! videoscale ! '
            f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! "
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} ! "
        f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--auth", default=None, help="user:password required (basic auth)")
    parser.add_argument("--audio-only", action="store_true")
    parser.add_argument("--file", default=None)
    parser.add_argument("--pattern", default="ball")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    # each client its own media: shared media is torn down when its last client leaves, and a client
    # that connects meanwhile (a restarted camera in a test) was answered "invalid data"
    factory.set_shared(False)
    if args.auth:
        user, password = args.auth.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print("ERROR cannot listen", flush=True)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
