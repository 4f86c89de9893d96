"""A generated test clip with moving PII whose boxes are known, written with PyAV.

A face cut from ../shared/data/images/deface_city.jpg (MIT, ORB-HD/deface) moves right, a drawn
license plate moves left, over a textured background (so "nothing else changed" is measurable);
an AAC tone is the audio track.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CITY = DATA / "images" / "deface_city.jpg"


@dataclass
class Clip:
    path: Path
    width: int
    height: int
    fps: int
    frames: int
    boxes: dict[int, dict[str, tuple[int, int, int, int]]] = field(default_factory=dict)  # frame -> kind -> box


def face_crop(size: int = 96) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The largest face of the city image with some hair and background, as RGB size x size,
    and the face's box inside it (the face as CenterFace outlines it, in the crop's pixels)."""
    from streampii.detectors.face import FaceDetector

    city = cv2.cvtColor(cv2.imread(str(CITY)), cv2.COLOR_BGR2RGB)
    found = FaceDetector().detect(city)
    x1, y1, x2, y2 = found.boxes[np.argmax((found.boxes[:, 2] - found.boxes[:, 0]) * found.scores)]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 0.8
    left, top = int(cx - half), int(cy - half)
    crop = city[top : int(cy + half), left : int(cx + half)]
    k = size / crop.shape[1]
    face = (int((x1 - left) * k), int((y1 - top) * k), int((x2 - left) * k), int((y2 - top) * k))
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC), face


def background(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)  # smooth texture, codec-friendly


def plate_image(text: str = "AB-123-CD", height: int = 40) -> np.ndarray:
    scale = height / 40
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0 * scale, max(1, int(2 * scale)))
    plate = np.full((height, tw + int(16 * scale), 3), 255, np.uint8)
    cv2.rectangle(plate, (0, 0), (plate.shape[1] - 1, height - 1), (0, 0, 0), max(1, int(2 * scale)))
    cv2.putText(
        plate,
        text,
        (int(8 * scale), (height + th) // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        1.0 * scale,
        (0, 0, 0),
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
    return plate


def make_clip(
    path: Path,
    seconds: float = 2.0,
    fps: int = 24,
    width: int = 480,
    height: int = 272,
    face: bool = True,
    plate: bool = True,
    audio: bool = True,
    visible: tuple[float, float] | None = None,
) -> Clip:
    """Write the clip; ``visible`` limits the PII to a time span (seconds)."""
    frames = int(round(seconds * fps))
    clip = Clip(path, width, height, fps, frames)
    face_img, face_box = face_crop() if face else (None, None)
    plate_img = plate_image() if plate else None
    base = background(width, height)
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "ultrafast"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    if audio:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
    for i in range(frames):
        image = base.copy()
        boxes = {}
        t = i / fps
        shown = visible is None or visible[0] <= t <= visible[1]
        if face_img is not None and shown:
            x, y = 20 + 4 * i, 30
            image[y : y + face_img.shape[0], x : x + face_img.shape[1]] = face_img
            boxes["face"] = (x + face_box[0], y + face_box[1], x + face_box[2], y + face_box[3])
        if plate_img is not None and shown:
            x, y = width - plate_img.shape[1] - 10 - 3 * i, height - 60
            image[y : y + plate_img.shape[0], x : x + plate_img.shape[1]] = plate_img
            boxes["plate"] = (x, y, x + plate_img.shape[1], y + plate_img.shape[0])
        clip.boxes[i] = boxes
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if audio:
        samples = int(seconds * 48000)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    out.close()
    return clip


def decode_rgb(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [f.pts for f in frames]


def audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [(p.pts, bytes(p)) for p in container.demux(audio=0) if p.size]


def sharpness(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Laplacian variance (high-frequency energy) of the box in grey."""
    x1, y1, x2, y2 = box
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).var())
