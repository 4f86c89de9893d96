"""What the redactor's detectors cost per run, inside onnxruntime and outside it (their own pre- and
post-processing, which scripts/bench_e2e.py bills to the pipeline in its strict reading).

  python scripts/bench_detectors.py CLIP [--start SECONDS] [--frames 20] [--rounds 3]

Decodes ``--frames`` frames of CLIP, one every half second from ``--start``, converts them as the
redactor does (planar RGB for CenterFace, packed RGB for PP-OCR), runs each detector on each
frame ``--rounds`` times on one thread, and prints the best round's milliseconds a run: thread
CPU in all, in onnxruntime's ``InferenceSession.run``, and the rest.
"""

from __future__ import annotations

import argparse
import time

import av
import cv2
import onnxruntime

from streampii.redactor import RedactOptions, build_detectors, upright_planes, upright_rgb
from streampii.source import DecodedFrame

_spent = [0.0]
_run = onnxruntime.InferenceSession.run


def _timed_run(self, *args, **kwargs):
    started = time.thread_time()
    try:
        return _run(self, *args, **kwargs)
    finally:
        _spent[0] += time.thread_time() - started


def frames(clip: str, start: float, count: int) -> list[DecodedFrame]:
    taken: list[DecodedFrame] = []
    with av.open(clip) as container:
        for frame in container.decode(video=0):
            t = float(frame.pts * frame.time_base)
            if t >= start + 0.5 * len(taken) - 1e-6:
                taken.append(DecodedFrame(t, frame))
                if len(taken) == count:
                    break
    return taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--start", type=float, default=0.0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as `watch` has it
    onnxruntime.InferenceSession.run = _timed_run
    decoded = frames(args.clip, args.start, args.frames)
    if not decoded:
        raise SystemExit(f"bench_detectors: no frames at {args.start} s or later")
    w, h = decoded[0].frame.width, decoded[0].frame.height
    print(f"{len(decoded)} frames of {args.clip} ({w}x{h}) from {decoded[0].t:.1f} s")
    for detector, _ in build_detectors(RedactOptions(detect=("face", "plate"))):
        planar = hasattr(detector, "detect_planes")
        pictures = [upright_planes(d) if planar else upright_rgb(d) for d in decoded]
        detect = detector.detect_planes if planar else detector.detect
        detect(pictures[0])  # a session's first run allocates
        best = None
        for _ in range(args.rounds):
            _spent[0] = 0.0
            started = time.thread_time()
            found = sum(len(detect(p)) for p in pictures)
            total = time.thread_time() - started
            if best is None or total < best[0]:
                best = (total, _spent[0], found)
        total, inside, found = best
        n = len(pictures)
        print(
            f"{detector.name:10} {total / n * 1000:8.2f} ms a run: onnxruntime {inside / n * 1000:8.2f}, "
            f"outside it {(total - inside) / n * 1000:6.2f} ({found} boxes in {n} frames)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
