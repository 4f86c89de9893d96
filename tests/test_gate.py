"""The gate: which windows go to the VLM. Synthetic scenes with known motion, fake detectors
that count their calls, and one real clip with CenterFace."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from videos import write_video

from streampii.detectors import Detections
from streampii.gate import GATE_MODES, Gate, GateDecision, GateOptions, changed_fraction, gate_windows, small_gray
from streampii.sampler import Frame, SamplerOptions, sample_frames
from streampii.source import decode_video, describe, open_video
from streampii.windows import Window, WindowOptions, sliding_windows

H, W = 280, 504  # a 16:9 frame on the Qwen grid
WINDOWS = WindowOptions(window=4, stride=2)  # at 1 fps: 4 frames every 2, windows share 2 frames


def scene(seed: int = 0) -> np.ndarray:
    """A smooth, textured still scene (no flat areas: differencing must work on real texture)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, (9, 16, 3)).astype(np.float32)
    return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    return (image + rng.normal(0, sigma, image.shape)).clip(0, 255).astype(np.uint8)


def with_square(image: np.ndarray, x: int, y: int = 120, side: int = 40) -> np.ndarray:
    out = image.copy()
    out[y : y + side, x : x + side] = (20, 20, 30)  # a dark figure against the mid-gray scene
    return out


def to_frames(images: list[np.ndarray]) -> list[Frame]:
    return [Frame(index=i, t=float(i), image=img, source_size=(1920, 1080)) for i, img in enumerate(images)]


def decide_all(images: list[np.ndarray], options: GateOptions, detectors=None) -> list[GateDecision]:
    frames = to_frames(images)
    return list(gate_windows(sliding_windows(frames, WINDOWS, fps=1.0), Gate(options, detectors)))


def static_images(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = scene()
    return [noisy(base, rng) for _ in range(n)]


class FakeDetector:
    """Finds what ``find(image)`` says, and records every image it was given."""

    def __init__(self, category: str = "face", score: float = 0.9, find=lambda image: True, name: str = "fake"):
        self.name, self.kinds = name, (category,)
        self.category, self.score, self.find = category, score, find
        self.seen: list[int] = []  # id() of each image passed

    def detect(self, image_rgb: np.ndarray) -> Detections:
        self.seen.append(id(image_rgb))
        if not self.find(image_rgb):
            return Detections(detector=self.name)
        return Detections([[10, 10, 50, 50]], [self.score], [self.category], detector=self.name)


def test_static_noisy_frames_are_idle_except_the_first_window() -> None:
    gate = Gate(GateOptions(mode="motion"))
    decisions = list(gate_windows(sliding_windows(to_frames(static_images(12)), WINDOWS, fps=1.0), gate))
    assert not gate.detects and gate.detector_runs == gate.detector_reuses == 0  # motion alone: no detector counts
    assert len(decisions) == 5
    assert [d.analyze for d in decisions] == [True, False, False, False, False]
    assert decisions[0].reason == "first window"
    assert {d.reason for d in decisions[1:]} == {"idle"}
    assert max(d.motion for d in decisions) < GateOptions().motion_threshold


def test_a_still_scene_through_h264_compression_is_idle(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = scene(3)
    images = [noisy(base, rng, sigma=6.0) for _ in range(10)]
    path = write_video(tmp_path / "still.mp4", [float(i) for i in range(10)], (W, H), lambda i, t: images[i])
    with open_video(str(path)) as container:
        frames = list(sample_frames(decode_video(container, describe(container, str(path))), SamplerOptions(fps=1)))
    decisions = list(gate_windows(sliding_windows(frames, WINDOWS, fps=1.0), Gate(GateOptions(mode="motion"))))
    assert [d.analyze for d in decisions] == [True] + [False] * (len(decisions) - 1)


def test_a_moving_square_makes_its_windows_analyzed() -> None:
    rng = np.random.default_rng(4)
    base = scene()
    # the square walks in at frame 6, crosses 30 px a second, and is gone from frame 10 on
    images = [noisy(with_square(base, 60 + 30 * (i - 6)) if 6 <= i < 10 else base, rng) for i in range(16)]
    decisions = decide_all(images, GateOptions(mode="motion"))
    changed = {6, 7, 8, 9, 10}  # frames that differ from the frame before them
    for d in decisions[1:]:
        indices = {f.index for f in d.window.frames}
        assert d.analyze == bool(indices & changed), (d.window.first_index, d.reason)
        if d.analyze:
            assert d.reason.startswith("motion ") and d.reason.endswith("%") and d.motion > 0.005
    assert [d.analyze for d in decisions] == [True, False, True, True, True, True, False]


def test_a_global_brightness_step_is_not_motion() -> None:
    rng = np.random.default_rng(5)
    base = scene()
    # auto-exposure: a step up by 30% at frame 6, then a lamp flickering by +-3% from frame 9
    gains = [1.0] * 6 + [1.3] * 3 + [1.27, 1.33, 1.27, 1.33]
    images = [noisy(base * g + 8 * (g != 1.0), rng) for g in gains]
    assert np.mean(np.abs(images[6].astype(float) - images[5]) > 25) > 0.3  # plain differencing would fire
    decisions = decide_all(images, GateOptions(mode="motion"))
    assert [d.analyze for d in decisions] == [True] + [False] * (len(decisions) - 1)
    # the compensation must not hide a figure that walks in during the step
    images[6] = noisy(with_square(base * 1.3 + 8, 200), rng)
    moved = decide_all(images, GateOptions(mode="motion"))
    assert [d.analyze for d in moved][1:4] == [False, True, True]


def test_changed_fraction_measures_the_changed_area() -> None:
    base = scene()
    a, b = small_gray(base.astype(np.uint8)), small_gray(with_square(base, 100, side=56).astype(np.uint8))
    assert small_gray(base.astype(np.uint8)).shape == (89, 160)
    assert changed_fraction(a, a) == 0.0
    assert changed_fraction(a, b) == pytest.approx(56 * 56 / (H * W), rel=0.35)
    assert changed_fraction(a, small_gray(np.zeros((140, 252, 3), np.uint8), 80)) == 1.0  # new resolution


@pytest.mark.parametrize("shape", [(280, 504), (720, 1280), (89, 160), (300, 161), (6, 2000)])
def test_small_gray_is_the_block_mean_of_the_grey_picture(shape) -> None:
    """Grey first and a whole-factor shrink before the rest: within a few levels of one
    INTER_AREA resize of the picture, at any size and aspect."""
    rng = np.random.default_rng(5)
    picture = noisy(cv2.resize(scene(), shape[::-1], interpolation=cv2.INTER_LINEAR), rng, sigma=30.0)
    small = small_gray(picture)
    h, w = shape
    scale = min(1.0, 160 / max(h, w))
    dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.resize(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), dims, interpolation=cv2.INTER_AREA)
    expected = cv2.GaussianBlur(grey.astype(np.float32), (3, 3), 0)
    assert small.shape == expected.shape == (dims[1], dims[0])
    assert np.abs(small - expected).mean() < 1.5 and np.abs(small - expected).max() < 8


def test_a_face_in_a_still_scene_is_analyzed_in_detect_mode_only() -> None:
    images = static_images(10)
    detect = decide_all(images, GateOptions(mode="detect"), [FakeDetector("face", 0.9)])
    assert all(d.analyze for d in detect)
    assert [d.reason for d in detect] == ["first window"] + ["face"] * (len(detect) - 1)
    motion = decide_all(images, GateOptions(mode="motion"), [FakeDetector("face", 0.9)])
    assert [d.analyze for d in motion] == [True] + [False] * (len(motion) - 1)
    weak = decide_all(images, GateOptions(mode="detect", face_score=0.5), [FakeDetector("face", 0.4)])
    assert [d.analyze for d in weak] == [True] + [False] * (len(weak) - 1)


def test_text_and_plates_are_analyzed_above_their_score() -> None:
    images = static_images(6)
    assert decide_all(images, GateOptions(), [FakeDetector("text", 0.8)])[1].reason == "text"
    assert decide_all(images, GateOptions(), [FakeDetector("license_plate", 0.8)])[1].reason == "plate"
    assert not decide_all(images, GateOptions(text_score=0.7), [FakeDetector("text", 0.6)])[1].analyze


def test_off_analyzes_every_window() -> None:
    face = FakeDetector()
    decisions = decide_all(static_images(10), GateOptions(mode="off"), [face])
    assert len(decisions) == 4 and all(d.analyze and d.reason == "gate off" for d in decisions)
    assert face.seen == []


def test_a_frame_shared_by_two_windows_is_detected_once() -> None:
    rng = np.random.default_rng(6)
    base = scene()
    # still, then a square shows in frames 10-11: frames 10-12 differ from the frame before them, so the
    # windows from 8, 10 and 12 go by motion, unseen by the detectors
    images = [noisy(with_square(base, 100 + 40 * (i - 10)) if i in (10, 11) else base, rng) for i in range(18)]
    frames = to_frames(images)
    index_of = {id(f.image): f.index for f in frames}
    face = FakeDetector("face", find=lambda image: False)
    text = FakeDetector("text", find=lambda image: False)
    always = GateOptions(mode="detect", redetect_after=0, still_level=0, detect_every=1)  # the cache alone
    gate = Gate(always, [face, text])
    decisions = list(gate_windows(sliding_windows(frames, WINDOWS, fps=1.0), gate))
    assert [d.reason.split()[0] for d in decisions] == ["first"] + ["idle"] * 3 + ["motion"] * 3 + ["idle"]
    for detector in (face, text):
        calls = Counter(index_of[i] for i in detector.seen)
        # frames 2-9 and 14-17 are in idle windows; each is detected once although most are in two
        assert sorted(calls) == [2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 16, 17]
        assert set(calls.values()) == {1}


def test_a_face_found_ends_the_search_before_the_text_detector() -> None:
    face = FakeDetector("face")
    text = FakeDetector("text")
    always = GateOptions(redetect_after=0, still_level=0, detect_every=1)
    decisions = decide_all(static_images(10), always, [face, text])
    assert {d.reason for d in decisions[1:]} == {"face"}
    assert text.seen == []
    assert len(face.seen) == len(decisions) - 1  # one frame per window is enough


def test_detect_every_skips_frames_by_index() -> None:
    face = FakeDetector("face", find=lambda image: False)
    frames = to_frames(static_images(10))
    index_of = {id(f.image): f.index for f in frames}
    gate = Gate(GateOptions(detect_every=2, redetect_after=0, still_level=0), [face])
    list(gate_windows(sliding_windows(frames, WINDOWS, fps=1.0), gate))
    assert sorted(index_of[i] for i in face.seen) == [2, 4, 6, 8]


def test_default_detectors_are_built_lazily_and_text_only_when_no_face(monkeypatch) -> None:
    import streampii.detectors.face as face_module
    import streampii.detectors.text as text_module

    built: list[tuple] = []

    class Face(FakeDetector):
        def __init__(self, options=None):
            super().__init__("face", find=lambda image: False, name="centerface")
            built.append(("face",))

    class Text(FakeDetector):
        def __init__(self, kinds=("plate", "text"), options=None):
            super().__init__("text", name="ppocr")
            built.append(("text", kinds, options.recognize))

    monkeypatch.setattr(face_module, "FaceDetector", Face)
    monkeypatch.setattr(text_module, "TextDetector", Text)
    rng = np.random.default_rng(7)
    base = scene()
    moving = [noisy(with_square(base, 30 * i), rng) for i in range(6)]
    gate = Gate(GateOptions())
    assert gate.describe()["detectors"] == ["centerface", "ppocr"]
    assert all(d.analyze for d in gate_windows(sliding_windows(to_frames(moving), WINDOWS, 1.0), gate))
    assert built == []  # motion decided every window: no model was loaded
    still = to_frames([noisy(base, rng) for _ in range(6)])
    assert [d.reason for d in gate_windows(sliding_windows(still, WINDOWS, 1.0), Gate(GateOptions()))] == [
        "first window",
        "text",
    ]
    assert built == [("face",), ("text", ("plate", "text"), False)]


def test_loading_a_detector_counts_as_model_time(monkeypatch) -> None:
    """The gate's detectors load on first use, inside its run: that is model time (``gate_detect``),
    as the redactor's and the VLM's loading happen before a run, not the gate's own work."""
    import time

    import streampii.detectors.face as face_module

    class Slow(FakeDetector):
        def __init__(self, options=None):
            started = time.thread_time()
            while time.thread_time() - started < 0.2:  # a model's load: CPU on the calling thread
                pass
            super().__init__("face", name="centerface")

    monkeypatch.setattr(face_module, "FaceDetector", Slow)
    rng = np.random.default_rng(7)
    still = to_frames([noisy(scene(), rng) for _ in range(6)])
    gate = Gate(GateOptions())
    assert [d.reason for d in gate_windows(sliding_windows(still, WINDOWS, 1.0), gate)] == ["first window", "face"]
    assert gate.times.cpu["gate_detect"] >= 0.2


def test_a_new_input_starts_over() -> None:
    gate = Gate(GateOptions(mode="motion"))
    frames = to_frames(static_images(6))
    first = [gate.decide(w).reason for w in sliding_windows(frames, WINDOWS, 1.0)]
    again = [gate.decide(w).reason for w in sliding_windows(frames, WINDOWS, 1.0)]
    assert first == again == ["first window", "idle"]


def test_options_are_checked_and_described() -> None:
    assert GATE_MODES == ("off", "motion", "detect") and GateOptions().mode == "detect"
    with pytest.raises(ValueError, match="--gate must be one of off, motion, detect, got 'fast'"):
        GateOptions(mode="fast")
    with pytest.raises(ValueError, match="motion_threshold"):
        GateOptions(motion_threshold=2)
    with pytest.raises(ValueError, match="face_score"):
        GateOptions(face_score=-0.1)
    with pytest.raises(ValueError, match="still_level"):
        GateOptions(still_level=-1)
    with pytest.raises(ValueError, match="redetect_after"):
        GateOptions(redetect_after=float("nan"))
    assert Gate(GateOptions(mode="off")).describe() == {"mode": "off"}
    assert Gate(GateOptions(mode="motion")).describe() == {
        "mode": "motion",
        "motion_threshold": 0.001,
        "pixel_threshold": 25.0,
        "motion_size": 160,
    }
    described = Gate(GateOptions(), [FakeDetector(name="mine")]).describe()
    assert described["detectors"] == ["mine"] and described["face_score"] == 0.3 and described["text_score"] == 0.7
    assert described["still_level"] == 3.0


def test_real_faces_make_every_window_of_the_walking_clip_analyzed(clips) -> None:
    from streampii.detectors.face import FaceDetector

    path = str(clips["intel_face-demographics-walking-and-pause"])
    with open_video(path) as container:
        frames = list(sample_frames(decode_video(container, describe(container, path)), SamplerOptions(fps=4)))
    windows: list[Window] = list(sliding_windows(frames, WindowOptions(window=1, stride=0.5), fps=4))
    assert len(windows) >= 5
    detect = list(gate_windows(windows, Gate(GateOptions(), [FaceDetector()])))
    assert all(d.analyze for d in detect), [d.reason for d in detect]
    # the three people pause at the end: no motion there, CenterFace alone keeps those windows
    motion = list(gate_windows(windows, Gate(GateOptions(mode="motion"))))
    paused = [i for i, d in enumerate(motion) if not d.analyze]
    assert paused and all(detect[i].reason == "face" for i in paused)


def test_a_still_scene_keeps_the_last_verdict_and_a_faint_change_is_looked_at_after_redetect_after() -> None:
    """Detectors run once on a still scene; later still windows take that verdict (idle, or a
    static face: analyzed), past `redetect_after` too while not a pixel of the grey copy moved
    beyond noise. A change too faint for pixel_threshold (a smudge) keeps the verdict until
    `redetect_after` seconds after the picture they looked at, then the detectors run again; with
    `still_level` 0, they always do."""
    for finds, reason in ((False, "idle"), (True, "face")):
        for smudge, still_level, runs in ((False, 3.0, 1), (True, 3.0, 2), (False, 0.0, 5)):
            face = FakeDetector("face", find=lambda image, finds=finds: finds)
            images = static_images(40)
            if smudge:  # from 8 s on: 40 levels brighter on 6x6 pixels, 19 on the grey copy
                for image in images[8:]:
                    image[100:106, 200:206] = np.clip(image[100:106, 200:206].astype(int) + 40, 0, 255)
            gate = Gate(GateOptions(redetect_after=10.0, still_level=still_level), [face])
            decisions = list(gate_windows(sliding_windows(to_frames(images), WINDOWS, fps=1.0), gate))
            assert {d.reason for d in decisions[1:]} == {reason}
            assert all(d.motion == 0.0 for d in decisions)
            # the second window (frames 2-5) runs them (they look at 2 and 4; a face is found on 2);
            # then, where something changed, the first window whose last frame is over 10 s after
            # the picture of their verdict (frames 12-15, or 10-13 after a face on 2), and with
            # still_level 0 again each time that holds
            assert gate.detector_runs == runs, (smudge, still_level)
            assert gate.detector_reuses == len(decisions) - 1 - runs


def test_a_slow_change_below_the_motion_step_is_detected_again() -> None:
    """Each step is too small to count as motion, but the picture drifts away from the one the
    detectors saw: they run again and find what came in."""
    rng = np.random.default_rng(3)
    base = scene()
    images = []
    for i in range(40):  # a dark square that grows one pixel column per frame from frame 8
        image = base.copy()
        if i >= 8:
            image[100:140, 200 : 200 + (i - 8)] = (20, 20, 30)
        images.append(noisy(image, rng, sigma=1.0))
    face = FakeDetector("face", find=lambda image: image[120, 201].max() < 60)
    decisions = decide_all(images, GateOptions(redetect_after=1000), [face])
    assert all(d.motion <= GateOptions().motion_threshold for d in decisions)  # never motion
    assert decisions[-1].reason == "face"


def test_a_change_in_a_frame_the_detectors_did_not_look_at_is_looked_at_again() -> None:
    """A faint face that shows from a window's last frame on (not among the frames the detectors
    look at, by index) and then stays: the next still windows must not be taken for the picture
    the detectors saw, or its 'nothing found' holds for as long as the scene stays still."""
    images = static_images(40)
    for image in images[5:]:  # frame 5 ends the window of frames 2-5; the detectors look at 4
        image[100:106, 200:206] = 255
    face = FakeDetector("face", find=lambda image: image[103, 203].min() > 240)
    gate = Gate(GateOptions(redetect_after=10.0), [face])
    decisions = list(gate_windows(sliding_windows(to_frames(images), WINDOWS, fps=1.0), gate))
    assert all(d.motion <= GateOptions().motion_threshold for d in decisions)
    assert decisions[-1].reason == "face", [d.reason for d in decisions]


def test_a_small_clear_change_in_a_still_scene_is_looked_at_at_once() -> None:
    """A face too small for motion (on a large --max-pixels grid a 32-px face in 1080p is 0.08% of
    the grey copy) but clear against the scene: the next still window is no longer the picture the
    detectors saw, so they run again then, not redetect_after seconds later."""
    images = static_images(24)
    for image in images[7:]:  # a 7x7 dark patch: 11 pixels of the grey copy change, under motion_threshold's 14
        image[100:107, 200:207] = (20, 20, 30)
    face = FakeDetector("face", find=lambda image: image[103, 203].max() < 60)
    decisions = decide_all(images, GateOptions(), [face])
    assert all(d.motion <= GateOptions().motion_threshold for d in decisions)
    # the window of frames 4-7 shows it in its last frame only (the detectors look at 4); every
    # window from frames 6-9 on is sent
    assert [d.reason for d in decisions[3:]] == ["face"] * (len(decisions) - 3), [d.reason for d in decisions]


def test_a_face_too_small_for_motion_for_two_frames_sends_every_window_it_is_in() -> None:
    """The detectors look at every n-th frame of a still window, and also at its first and at
    each frame that differs from the one before it: a small face (too small for motion) seen in
    frames 9 and 10 alone, none of them a multiple of detect_every, sends the three windows that
    hold it, and the still scene after it is idle again."""
    images = static_images(20)
    for image in images[9:11]:  # a 7x7 dark patch: 11 pixels of the grey copy, under motion_threshold
        image[100:107, 200:207] = (20, 20, 30)
    face = FakeDetector("face", find=lambda image: image[103, 203].max() < 60)
    decisions = decide_all(images, GateOptions(), [face])
    assert all(d.motion <= GateOptions().motion_threshold for d in decisions)
    shown = {d.window.first_index: d.reason for d in decisions}
    assert shown == {0: "first window", 2: "idle", 4: "idle", 6: "face", 8: "face", 10: "face", 12: "idle"} | {
        i: "idle" for i in range(14, 18, 2)
    }
