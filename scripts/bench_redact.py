"""Benchmark the redactor against deface 1.5.0; one run prints the ratios the "Localize and blur" targets are set on.

  python scripts/bench_redact.py [--work DIR] [--clip NAME]... [--set FIELD=VALUE]... [--face-only] [--no-plates]

On every clip of ../shared/data/clips (never copied into the repo), in one process:

(a) Faces. deface's own CenterFace (``deface.centerface.CenterFace``, the backend deface picks here:
    ``auto``, which is OpenCV DNN when the ``onnx`` package is absent, as in this environment)
    runs at threshold 0.2 on every frame of the ORIGINAL video, inside deface's own
    ``video_detect`` (the CLI's code path, its imageio/ffmpeg reader and libx264 writer,
    ``--keep-audio``): one run gives deface's boxes and deface's wall time. Each box of each
    frame is then looked up in the DECODED streampii output, i.e. what a user gets.
    Criterion: a box is *obscured* when the detail left at the scale of facial features is at
    most ``--ratio`` (0.2) of the original's. Detail = variance of the Laplacian of the grey box,
    shrunk by 10% per side (the part an ellipse of 1.3x the box fully covers) and area-averaged
    down to 32x32 px (so encoder noise and the original's own motion blur do not count, eyes,
    mouth and glasses do). Measured on the egoblur clip: a plain re-encode keeps 0.93-1.02 of
    it, streampii's and deface's blurs leave <= 0.07 (on both face clips), a half-covered face about half.
    Boxes whose original detail is below ``--flat`` (15: nothing a blur could remove) are counted
    apart and judged by geometry instead: obscured when streampii's masks (``on_masks``, grown
    by ``mask_scale``, ellipses for faces) cover >= 90% of the shrunk box. The same test on
    deface's own output ("self") checks the criterion: it should find 0 there.
    Reverse: streampii face masks (per frame, from ``on_masks``) that match no deface box of the
    same frame (IoU >= 0.3, or either center inside the other box): faces (or false alarms)
    deface did not find.
(b) Speed. Wall time (and CPU time, this process plus waited-for children such as deface's
    ffmpeg) to produce the redacted video, deface / streampii. streampii runs the calls of
    ``redact_video`` (open, describe, decode, ``redact_frames``) with default ``RedactOptions``
    (``--set`` overrides fields) plus an ``on_masks`` recorder; model loading counts on both
    sides. A second streampii run with ``detect=("face",)`` (what deface does: faces only) is
    timed with ``--face-only``. The machine is shared: wall ratios move with the load, so
    CPU ratios are printed too.
(c) Plates. license_plate events (and their values) streampii found in intel_car-detection.mp4,
    and generated plates (cv2.putText, six colour styles, heights 12-40 px, 0 and 5 degrees
    rotation, on a textured 1280x720 frame) passed through the text detector as the redactor
    builds it (slight blur and JPEG quality 60 on every frame): the fraction found as
    ``license_plate`` over the plate, and read correctly (letters and digits equal, separators ignored).

Targets: (a) unobscured deface faces = 0; (b) deface / streampii wall time >= 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLIPS = ROOT.parent / "shared" / "data" / "clips"

from streampii.masks import scale_box  # noqa: E402
from streampii.redactor import RedactOptions, build_detectors, redact_frames  # noqa: E402
from streampii.source import DecodeReport, decode_video, describe, open_video  # noqa: E402

THRESHOLD = 0.2  # deface's default --thresh
SHRINK = 0.1  # each side of a face box, before measuring
DETAIL = 32  # pixels across a face when measuring its detail


@contextlib.contextmanager
def timed(into: dict):
    """Wall and CPU seconds of the block (CPU: this process and the children it waited for)."""
    wall, cpu = time.perf_counter(), time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        yield
    finally:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        into["wall"] = time.perf_counter() - wall
        into["cpu"] = time.process_time() - cpu + (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)


@contextlib.contextmanager
def quiet():
    """deface prints its backend and a tqdm bar; keep the table readable."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


# --- runs ---------------------------------------------------------------------------------------------------------


def run_deface(clip: Path, out: Path) -> tuple[list[np.ndarray], dict]:
    """deface's video path as its CLI runs it (``deface CLIP -o OUT --thresh 0.2 -k``); every frame's boxes."""
    from deface.centerface import CenterFace
    from deface.deface import video_detect

    found: list[np.ndarray] = []
    timing: dict = {}
    with quiet(), timed(timing):
        centerface = CenterFace(in_shape=None, backend="auto")

        def recording(frame: np.ndarray, threshold: float):
            dets, lms = centerface(frame, threshold=threshold)
            found.append(np.array(dets[:, :5], np.float32))  # x1, y1, x2, y2, score in the frame's pixels
            return dets, lms

        video_detect(
            ipath=str(clip),
            opath=str(out),
            centerface=recording,
            threshold=THRESHOLD,
            enable_preview=False,
            cam=False,
            nested=False,
            replacewith="blur",
            mask_scale=1.3,
            ellipse=True,
            draw_scores=False,
            ffmpeg_config={"codec": "libx264"},
            keep_audio=True,
        )
    timing["backend"] = centerface.backend
    return found, timing


def run_streampii(clip: Path, out: Path, options: RedactOptions) -> tuple[list[list[tuple[str, np.ndarray]]], dict]:
    """``redact_video``'s calls, with an ``on_masks`` recorder: each frame's (family, box) list and the report."""
    masks: list[list[tuple[str, np.ndarray]]] = []
    timing: dict = {}
    with timed(timing):
        container = open_video(str(clip))
        try:
            info = describe(container, str(clip))
            timing["report"] = redact_frames(
                decode_video(container, info, DecodeReport()),
                info,
                out,
                options,
                audio_source=str(clip) if info.has_audio else None,
                on_masks=lambda t, boxes: masks.append([(f, np.asarray(b, np.float64).copy()) for f, b in boxes]),
            )
        finally:
            container.close()
    return masks, timing


# --- (a) faces in the output --------------------------------------------------------------------------------------


def detail(grey: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Detail at the scale of facial features: Laplacian variance of the box shrunk to 32x32 (area average)."""
    x1, y1, x2, y2 = box
    small = cv2.resize(grey[y1:y2, x1:x2].astype(np.float32), (DETAIL, DETAIL), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


def shrunk(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * SHRINK, (y2 - y1) * SHRINK
    left, top = max(0, int(np.ceil(x1 + dx))), max(0, int(np.ceil(y1 + dy)))
    right, bottom = min(width, int(np.floor(x2 - dx))), min(height, int(np.floor(y2 - dy)))
    return (left, top, right, bottom) if right - left >= 3 and bottom - top >= 3 else None


def mask_image(boxes: list[tuple[str, np.ndarray]], scale: float, shape: str, width: int, height: int) -> np.ndarray:
    """Where streampii's masks are, drawn as the redactor draws them (approximately: whole pixels)."""
    covered = np.zeros((height, width), np.uint8)
    for family, box in boxes:
        grown = scale_box(box, scale, width, height)
        if grown is None:
            continue
        if family in ("text", "license_plate") or shape == "rect":
            covered[grown[1] : grown[3], grown[0] : grown[2]] = 1
        else:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            axes = ((box[2] - box[0]) * scale, (box[3] - box[1]) * scale)
            cv2.ellipse(covered, ((float(cx), float(cy)), (float(axes[0]), float(axes[1])), 0.0), 1, -1)
    return covered


def _matches(a: np.ndarray, b: np.ndarray) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    if union > 0 and ix * iy / union >= 0.3:
        return True

    def inside(p, q):
        cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
        return q[0] <= cx <= q[2] and q[1] <= cy <= q[3]

    return inside(a, b) or inside(b, a)


def measure_faces(
    clip: Path, redacted: Path, deface_out: Path, deface: list[np.ndarray], masks: list, options: RedactOptions, args
) -> dict:
    """Per deface box: obscured in streampii's output? (and, to check the criterion, in deface's own output)."""
    r = {"frames": 0, "boxes": 0, "unobscured": 0, "flat": 0, "flat_unobscured": 0, "geometry_miss": 0}
    r.update({"ours": 0, "ours_unmatched": 0, "ratios": [], "misses": [], "deface_self": 0})
    with av.open(str(clip)) as a, av.open(str(redacted)) as b, av.open(str(deface_out)) as c:
        triples = zip(a.decode(video=0), b.decode(video=0), c.decode(video=0), strict=False)
        for i, (fa, fb, fc) in enumerate(triples):
            r["frames"] += 1
            dets = deface[i] if i < len(deface) else np.zeros((0, 5), np.float32)
            ours = [box for family, box in (masks[i] if i < len(masks) else []) if family == "face"]
            r["ours"] += len(ours)
            r["ours_unmatched"] += sum(not any(_matches(box, d) for d in dets) for box in ours)
            if not len(dets):
                continue
            before = cv2.cvtColor(fa.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            after = cv2.cvtColor(fb.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            theirs = cv2.cvtColor(fc.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            h, w = before.shape
            cover = mask_image(masks[i] if i < len(masks) else [], options.mask_scale, options.shape, w, h)
            for det in dets:
                box = shrunk(det, w, h)
                if box is None:
                    continue
                r["boxes"] += 1
                x1, y1, x2, y2 = box
                covered = float(cover[y1:y2, x1:x2].mean())
                geometry_ok = covered >= 0.9
                r["geometry_miss"] += not geometry_ok
                s_in, s_out = detail(before, box), detail(after, box)
                r["deface_self"] += s_in >= args.flat and detail(theirs, box) > args.ratio * s_in
                if s_in < args.flat:
                    r["flat"] += 1
                    ok = geometry_ok
                    r["flat_unobscured"] += not ok
                else:
                    ok = s_out <= args.ratio * s_in
                    if ok:
                        r["ratios"].append(s_out / s_in)
                r["unobscured"] += not ok
                if not ok:
                    t = float(fa.pts * fa.time_base) if fa.pts is not None else float("nan")
                    where = [round(float(v)) for v in det[:4]]
                    r["misses"].append(
                        (i, round(t, 3), where, round(float(det[4]), 2), round(s_in, 1), round(s_out, 1), covered)
                    )
        r["frames_deface"] = len(deface)
    return r


# --- (c) plates ---------------------------------------------------------------------------------------------------

# name, text, foreground RGB, background RGB, blue EU strip on the left
STYLES = [
    ("EU", "AB 123 CD", (20, 20, 20), (245, 245, 245), True),
    ("US", "7ABC123", (25, 45, 120), (240, 240, 235), False),
    ("UK", "AB12 CDE", (20, 20, 20), (250, 205, 20), False),
    ("NL yellow", "12-XKB-3", (20, 20, 20), (245, 190, 20), False),
    ("white/blue", "KA 4821", (245, 245, 245), (30, 60, 150), False),
    ("white/black", "BZ 7305 M", (235, 235, 235), (25, 25, 25), False),
]
HEIGHTS = (12, 16, 20, 24, 32, 40)
ANGLES = (0.0, 5.0)
WIDTH, HEIGHT = 1280, 720  # generated frames (HD: the detector may shrink them)


def plate_picture(text: str, height: int, fg, bg, strip: bool) -> np.ndarray:
    """A plate ``height`` px tall: text drawn large, rendered at 4x and shrunk (anti-aliased like a camera)."""
    k = 4
    hh = height * k
    font, thickness = cv2.FONT_HERSHEY_DUPLEX, max(1, int(hh * 0.09))
    scale = cv2.getFontScaleFromHeight(font, int(hh * 0.58), thickness)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    left = int(hh * 0.45) if strip else int(hh * 0.2)
    plate = np.empty((hh, left + tw + int(hh * 0.2), 3), np.uint8)
    plate[...] = bg
    if strip:
        plate[:, : int(hh * 0.35)] = (20, 50, 160)
    cv2.rectangle(plate, (0, 0), (plate.shape[1] - 1, hh - 1), fg, max(1, int(hh * 0.04)))
    cv2.putText(plate, text, (left, (hh + th) // 2), font, scale, fg, thickness, cv2.LINE_AA)
    return cv2.resize(plate, (plate.shape[1] // k, height), interpolation=cv2.INTER_AREA)


def plate_scene(plate: np.ndarray, angle: float, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 640x360 frame: textured background, a car-coloured body, the plate (rotated ``angle``) on it;
    then blurred (sigma 0.7 px) and JPEG-compressed (quality 60)."""
    rng = np.random.default_rng(seed)
    width, height = WIDTH, HEIGHT
    noise = rng.integers(40, 200, (height // 12, width // 12, 3), dtype=np.uint8)
    frame = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
    ph, pw = plate.shape[:2]
    cx, cy = int(rng.integers(pw, width - pw)), int(rng.integers(height // 3, height - 2 * ph))
    body = tuple(int(v) for v in rng.integers(60, 200, 3))
    cv2.rectangle(frame, (cx - pw * 2, cy - ph * 3), (cx + pw * 2, cy + ph * 2), body, -1)
    matrix = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, 1.0)
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    turned = cv2.transform(corners[None], matrix)[0]
    bw, bh = (
        int(np.ceil(turned[:, 0].max() - turned[:, 0].min())),
        int(np.ceil(turned[:, 1].max() - turned[:, 1].min())),
    )
    matrix[:, 2] += (bw / 2 - pw / 2, bh / 2 - ph / 2)
    warped = cv2.warpAffine(plate, matrix, (bw, bh), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), matrix, (bw, bh), flags=cv2.INTER_LINEAR)[..., None] / 255
    x, y = cx - bw // 2, cy - bh // 2
    region = frame[y : y + bh, x : x + bw]
    region[...] = (alpha * warped + (1 - alpha) * region).astype(np.uint8)
    # a camera's look: slight defocus and lossy compression
    frame = cv2.GaussianBlur(frame, (0, 0), 0.7)
    _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 60])
    return cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), (x, y, x + bw, y + bh)


def normalized(text: str | None) -> str:
    return re.sub(r"[^A-Z0-9]", "", (text or "").upper())


def bench_plates(options: RedactOptions) -> list[dict]:
    detector = next(d for d, _ in build_detectors(dataclasses.replace(options, detect=("plate",))))
    rows = []
    for s, (style, text, fg, bg, strip) in enumerate(STYLES):
        for height in HEIGHTS:
            for angle in ANGLES:
                frame, truth = plate_scene(plate_picture(text, height, fg, bg, strip), angle, seed=100 * s + height)
                found = detector.detect(frame)
                hits = []
                for box, category, value in zip(found.boxes, found.categories, found.values, strict=True):
                    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                    if truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]:
                        hits.append((category, value))
                plate = [v for c, v in hits if c == "license_plate"]
                rows.append(
                    {
                        "style": style,
                        "height": height,
                        "angle": angle,
                        "plate": bool(plate),
                        "read": any(normalized(v) == normalized(text) for v in plate),
                        "values": [v for _, v in hits],
                    }
                )
    return rows


# --- main ---------------------------------------------------------------------------------------------------------


def parse_set(items: list[str]) -> dict:
    fields = {f.name for f in dataclasses.fields(RedactOptions)}
    values = {}
    for item in items:
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields:
            raise SystemExit(f"--set: RedactOptions has no field {key!r}")
        if key == "detect":
            values[key] = raw
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = None if raw == "None" else raw
    return values


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for the redacted videos (default: a temporary folder)")
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--clip", action="append", default=[], help="only clips whose name contains this")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a RedactOptions field")
    parser.add_argument("--ratio", type=float, default=0.2, help="obscured: output/original detail <= this")
    parser.add_argument(
        "--flat", type=float, default=15.0, help="original detail below which a box is judged by mask geometry"
    )
    parser.add_argument("--face-only", action="store_true", help="also time streampii with detect=face (as deface)")
    parser.add_argument("--no-plates", action="store_true", help="skip the generated plates")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every unobscured box")
    args = parser.parse_args()

    options = RedactOptions(**parse_set(args.set))
    clips = sorted(p for p in args.clips.glob("*.mp4") if not args.clip or any(c in p.name for c in args.clip))
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    changed = {f.name: getattr(options, f.name) for f in dataclasses.fields(RedactOptions)}
    changed = {k: v for k, v in changed.items() if v != getattr(RedactOptions(), k)}
    print(f"streampii RedactOptions: {'defaults' if not changed else changed}; deface 1.5.0 --thresh {THRESHOLD}")

    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_redact_")))
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for clip in clips:
            stem = clip.stem
            deface_boxes, deface_time = run_deface(clip, work / f"{stem}.deface.mp4")
            masks, ours_time = run_streampii(clip, work / f"{stem}.redacted.mp4", options)
            face_time = None
            if args.face_only and options.detect != ("face",):
                _, face_time = run_streampii(
                    clip, work / f"{stem}.face.mp4", dataclasses.replace(options, detect="face")
                )
            redacted, theirs = work / f"{stem}.redacted.mp4", work / f"{stem}.deface.mp4"
            faces = measure_faces(clip, redacted, theirs, deface_boxes, masks, options, args)
            results.append((stem, deface_time, ours_time, face_time, faces))
            print(
                f"  done {stem}: deface {deface_time['wall']:.1f}s ({deface_time['backend']}), "
                f"streampii {ours_time['wall']:.1f}s",
                flush=True,
            )

        print_faces(results, args)
        print_speed(results)
        print_plates(results, options, args)


def row(cells: list, widths: list[int]) -> str:
    cells = [f"{c!s:<{w}}" if i == 0 else f"{c!s:>{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
    return " ".join(cells)


def print_faces(results: list, args) -> None:
    print("\n(a) faces: deface 1.5.0 boxes (every frame of the original) looked up in streampii's decoded output")
    widths = [26, 7, 6, 6, 6, 5, 5, 6, 7, 2, 6, 8, 6]
    keys = ("boxes", "unobscured", "flat", "geometry_miss", "deface_self", "ours", "ours_unmatched")
    head = [
        "clip",
        "frames",
        "deface",
        "unobsc",
        "frac",
        "flat",
        "geo-",
        "self",
        "max ok",
        "|",
        "ours",
        "unmatch",
        "frac",
    ]
    print(row(head, widths))
    total = dict.fromkeys(keys, 0)
    for stem, _, _, _, f in results:
        for k in keys:
            total[k] += f[k]
        frames = f["frames"] if f["frames"] == f["frames_deface"] else f"{f['frames']}/{f['frames_deface']}"
        cells = [stem[:26], frames, f["boxes"], f["unobscured"], ratio(f["unobscured"], f["boxes"]), f["flat"]]
        cells += [f["geometry_miss"], f["deface_self"], f"{max(f['ratios'], default=0.0):.3f}", "|", f["ours"]]
        print(row([*cells, f["ours_unmatched"], ratio(f["ours_unmatched"], f["ours"])], widths))
    cells = ["total", "", total["boxes"], total["unobscured"], ratio(total["unobscured"], total["boxes"])]
    cells += [total["flat"], total["geometry_miss"], total["deface_self"], "", "|", total["ours"]]
    print(row([*cells, total["ours_unmatched"], ratio(total["ours_unmatched"], total["ours"])], widths))
    print(
        f"  unobsc: detail (Laplacian variance at 32x32) of the box shrunk 10%/side, output / original > {args.ratio},"
        f"\n  or, for flat boxes (original detail < {args.flat}), streampii's masks cover < 90% of it."
        " geo-: boxes the masks cover < 90%.\n  self: deface's boxes unobscured in deface's OWN output by the same"
        " test (checks the criterion; expect 0).\n  max ok: the highest output/original detail among boxes judged"
        " obscured. ours: streampii face masks, all frames;\n  unmatch: those that match no deface box of the frame."
        " Target: unobsc = 0.\n"
    )
    for stem, _, _, _, f in results:
        shown = f["misses"] if args.verbose else f["misses"][:5]
        for i, t, box, score, s_in, s_out, covered in shown:
            print(
                f"  miss {stem[:20]} frame {i} t={t}s box {box} score {score}"
                f" detail {s_in}->{s_out} cover {covered:.2f}"
            )
        if len(f["misses"]) > len(shown):
            print(f"  ... {len(f['misses']) - len(shown)} more in {stem} (-v lists all)")


def print_speed(results: list) -> None:
    print("\n(b) speed: seconds to write the redacted video, wall/CPU; ratios deface / streampii")
    widths = [26, 13, 13, 6, 6, 2, 13, 6, 6]
    print(row(["clip", "deface", "streampii", "wall x", "cpu x", "|", "face only", "wall x", "cpu x"], widths))
    sums = np.zeros(6)
    for stem, d, o, fo, _ in results:
        fo = fo or {"wall": 0.0, "cpu": 0.0}
        times = (d["wall"], d["cpu"], o["wall"], o["cpu"], fo["wall"], fo["cpu"])
        sums += times
        print(row([stem[:26], *speed_cells(*times)], widths))
    print(row(["total", *speed_cells(*sums)], widths))
    for stem, _, o, _, _ in results:
        rep = o["report"]
        print(
            f"  {stem[:26]}: {rep.frames} frames, detector runs {rep.detections} (on changed regions alone "
            f"{dict(rep.regions)}), {rep.frames_masked} frames masked"
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"  deface backend: {results[0][1]['backend']}; target wall x >= 2; load average at the end: {load}")


def speed_cells(dw: float, dc: float, ow: float, oc: float, fw: float, fc: float) -> list[str]:
    cells = [f"{dw:.1f}/{dc:.1f}", f"{ow:.1f}/{oc:.1f}", ratio(dw, ow), ratio(dc, oc), "|"]
    return cells + [f"{fw:.1f}/{fc:.1f}" if fw else "-", ratio(dw, fw), ratio(dc, fc)]


def print_plates(results: list, options: RedactOptions, args) -> None:
    print("\n(c) plates")
    for stem, _, o, _, _ in results:
        events = o["report"].events
        plates = [e for e in events if e.category == "license_plate"]
        if "car" in stem or plates:
            values = ", ".join(f"{e.value or '?'} {e.start:.1f}-{e.end:.1f}s" for e in plates)
            texts = sum(e.category == "text" for e in events)
            print(f"  {stem}: {len(plates)} license_plate events [{values}]; {texts} text events")
    if args.no_plates:
        return
    rows = bench_plates(options)
    print(f"  generated: {len(STYLES)} styles x heights (px) x angles {ANGLES} deg; cells: found as plate/read right")
    widths = [12] + [5] * len(HEIGHTS) + [7, 7]
    print("  " + row(["style", *HEIGHTS, "plate", "read"], widths))
    for style, *_ in STYLES:
        mine = [r for r in rows if r["style"] == style]
        cells = []
        for h in HEIGHTS:
            at = [r for r in mine if r["height"] == h]
            cells.append(f"{sum(r['plate'] for r in at)}/{sum(r['read'] for r in at)}")
        n = len(mine)
        print(
            "  "
            + row(
                [style, *cells, f"{sum(r['plate'] for r in mine)}/{n}", f"{sum(r['read'] for r in mine)}/{n}"], widths
            )
        )
    n = len(rows)
    plate, read = sum(r["plate"] for r in rows), sum(r["read"] for r in rows)
    print(f"  total: license_plate {plate}/{n} = {plate / n:.2f}, read correctly {read}/{n} = {read / n:.2f}")
    for angle in ANGLES:
        at = [r for r in rows if r["angle"] == angle]
        print(f"    at {angle:g} deg: plate {sum(r['plate'] for r in at)}/{len(at)}, read {sum(r['read'] for r in at)}")
    if args.verbose:
        for r in rows:
            print(f"    {r['style']:<12} {r['height']:>3}px {r['angle']:>4g} deg: {r['values']}")


if __name__ == "__main__":
    main()
