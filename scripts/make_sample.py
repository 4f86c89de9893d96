"""Build samples/street.mp4 and its ground truth samples/street.truth.json.

The clip is 8 s at 12 fps, 640x360, with an AAC audio track:
- 0 to 3.4 s: three people walking toward the camera (Intel IoT Devkit sample video
  "face-demographics-walking-and-pause", CC-BY-4.0), read from ../shared/data;
- 3.5 to 8 s: a synthetic street scene: a car plate that moves across the frame and a
  name badge with a phone number, drawn here so their boxes are known exactly.

Usage: python scripts/make_sample.py [SHARED_DATA_DIR] [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, FPS = 640, 360, 12
PLATE, NAME, PHONE = "KA 4821 B", "JANE DOE", "+1 555 0134"


def street_frame(t: float) -> tuple[np.ndarray, list[float], list[float]]:
    """A road, a car whose plate moves left to right, and a badge held still."""
    image = np.full((HEIGHT, WIDTH, 3), (120, 160, 200), np.uint8)  # sky
    image[200:] = (70, 70, 70)  # road
    x = int(40 + (t - 3.5) * 70)
    cv2.rectangle(image, (x, 210), (x + 220, 300), (180, 30, 30), -1)  # car body
    plate = [x + 50, 270, x + 170, 296]
    cv2.rectangle(image, (plate[0], plate[1]), (plate[2], plate[3]), (250, 250, 250), -1)
    cv2.putText(image, PLATE, (plate[0] + 6, plate[3] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (10, 10, 10), 2)
    badge = [420, 40, 620, 150]
    cv2.rectangle(image, (badge[0], badge[1]), (badge[2], badge[3]), (245, 245, 235), -1)
    cv2.putText(image, NAME, (badge[0] + 12, badge[1] + 45), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 120), 2)
    cv2.putText(image, PHONE, (badge[0] + 12, badge[1] + 90), cv2.FONT_HERSHEY_SIMPLEX, 0.75, (20, 20, 20), 2)
    return image, [float(v) for v in plate], [float(v) for v in badge]


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    people = shared / "clips" / "intel_face-demographics-walking-and-pause.mp4"
    with av.open(str(people)) as src:
        walking = [f.to_ndarray(format="rgb24", width=WIDTH, height=HEIGHT) for f in src.decode(video=0)]
    truth: dict = {"clip": "street.mp4", "events": []}
    plate_boxes, badge_boxes = [], []
    path = out_dir / "street.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "26", "preset": "veryslow"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        for i in range(8 * FPS):
            t = i / FPS
            if t < 3.5:
                image = walking[min(i, len(walking) - 1)]
            else:
                image, plate, badge = street_frame(t)
                plate_boxes.append({"t": round(t, 3), "box": plate})
                badge_boxes.append({"t": round(t, 3), "box": badge})
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        tone = (0.1 * np.sin(np.arange(8 * 16000) * 2 * np.pi * 330 / 16000)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[start : start + 1024].reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    truth["events"] = [
        {
            "category": "face",
            "start": 0.0,
            "end": round((len(walking) - 1) / FPS, 3),
            "count": 3,
            "description": "three people walking toward the camera",
        },
        {"category": "license_plate", "start": 3.5, "end": round(95 / FPS, 3), "value": PLATE, "boxes": plate_boxes},
        {"category": "person_name", "start": 3.5, "end": round(95 / FPS, 3), "value": NAME, "boxes": badge_boxes},
        {"category": "contact_info", "start": 3.5, "end": round(95 / FPS, 3), "value": PHONE, "boxes": badge_boxes},
    ]
    (out_dir / "street.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB) and its ground truth")


if __name__ == "__main__":
    main()
