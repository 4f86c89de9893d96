"""Helpers for the live / segments / resume tests: a real RTSP server, and a tiny analyzer.

``RtspServer`` runs tests/gst_rtsp_server.py (GStreamer's RTSP server) with the SYSTEM python,
since ``gi`` is a Debian package. Run as a script, this module analyses one input with the
deterministic ``BrightnessAnalyzer`` and resumable state: the SIGKILL test kills that process.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streampii.gate import GateOptions

HERE = Path(__file__).resolve().parent
NO_GATE = GateOptions(mode="off")  # these tests count windows: every one goes to the analyzer
SYSTEM_PYTHON = "/usr/bin/python3"


def gst_rtsp_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


class RtspServer:
    """GStreamer's RTSP server on 127.0.0.1; ``stop()`` + ``start()`` simulate a camera drop."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        for _ in range(20):  # the old port may linger a moment after a restart
            cmd = [SYSTEM_PYTHON, str(HERE / "gst_rtsp_server.py"), "--port", str(self.port), *self.args]
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = self.process.stdout.readline()
            if line.startswith("READY"):
                self.port = int(line.split()[1])
                return self
            self.process.wait(timeout=5)
            time.sleep(0.25)
        raise RuntimeError("the GStreamer RTSP server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def url(self, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}/cam"


class BlackHole:
    """A TCP port that accepts connections and never answers: an RTSP camera that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class BrightnessAnalyzer:
    """Deterministic stand-in for the VLM: a ``text`` finding for every bright frame, its value
    the brightness band, so that consecutive frames of one band merge into one event."""

    name = "brightness"

    def __init__(self, threshold: float = 100.0, delay: float = 0.0) -> None:
        self.threshold = threshold
        self.delay = delay

    def analyze(self, windows: Sequence) -> list:
        from streampii.analyzers import Finding, WindowResult

        results = []
        for window in windows:
            time.sleep(self.delay)  # a slow model: gives a SIGKILL time to land mid-run
            findings = []
            for frame in window.frames:
                mean = float(np.asarray(frame.image).mean())
                if mean > self.threshold:
                    value = f"band{int(mean) // 40}"
                    findings.append(Finding("text", frame.t, frame.t, value=value, detector=self.name))
            results.append(WindowResult(window=window, findings=findings, analyzer=self.name))
        return results

    def describe(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}


def brightness_draw(period: int = 7):
    """Frames whose brightness climbs and falls in bands: several events per minute."""

    def draw(i: int, t: float) -> np.ndarray:
        level = [20, 150, 200, 30, 250, 120, 60][(i // period) % 7]
        return np.full((180, 320, 3), level, np.uint8)

    return draw


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def main(argv: list[str]) -> int:
    """python tests/live_helpers.py VIDEO OUT [DELAY]: resumable run with the brightness analyzer."""
    from streampii.pipeline import WatchOptions, watch
    from streampii.sampler import SamplerOptions
    from streampii.state import RunState
    from streampii.windows import WindowOptions

    source, out = argv[0], Path(argv[1])
    delay = float(argv[2]) if len(argv) > 2 else 0.0
    options = WatchOptions(
        out=out, sampler=SamplerOptions(fps=2.0), windows=WindowOptions(window=2.0, stride=1.0), gate=NO_GATE
    )
    with RunState(out) as state:
        result = watch(source, options, [BrightnessAnalyzer(delay=delay)], state=state)
    print(result.state, result.events, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
