"""The redacted video: every known PII box of every frame obscured, the rest, the frame count,
the timestamps and the audio unchanged. Clips are generated into tmp_path (tests/redact_clip.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np
import pytest
from videos import first_field, write_video, write_with_audio

from streampii.analyzers import Finding, TimedBox
from streampii.redactor import RedactOptions, redact_frames, redact_video
from streampii.source import decode_video, describe, open_video
from tests.redact_clip import audio_packets, decode_rgb, make_clip, sharpness

SHARP = {"crf": "10", "preset": "ultrafast"}  # generated clips: detail well kept


def inner(box, f=0.1):
    w, h = box[2] - box[0], box[3] - box[1]
    return int(box[0] + f * w), int(box[1] + f * h), int(box[2] - f * w), int(box[3] - f * h)


def grown(box, scale, width, height, extra=6):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    return (
        max(0, int(cx - hw) - extra),
        max(0, int(cy - hh) - extra),
        min(width, int(cx + hw) + extra),
        min(height, int(cy + hh) + extra),
    )


def redact_noting_time(path, out_path, options, detectors, current):
    """``redact_frames`` of the clip at ``path``, ``current[0]`` set to each frame's time as it is
    pushed: a test's detectors read it to tell when they ran."""
    with open_video(str(path)) as container:
        info = describe(container, str(path))

        def noted():
            for decoded in decode_video(container, info):
                current[0] = decoded.t
                yield decoded

        return redact_frames(noted(), info, out_path, options, detectors=detectors)


@pytest.fixture(scope="module")
def pii_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "walk.mp4")


@pytest.fixture(scope="module")
def redacted(pii_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "walk.redacted.mp4"
    events = []
    options = RedactOptions(detect=("face", "plate"), detect_interval=0.2, text_interval=0.5, crf=12)
    report = redact_video(str(pii_clip.path), out, options, on_event=events.append)
    return report, out, events


def test_every_known_box_is_obscured_on_every_frame(pii_clip, redacted):
    report, out, _ = redacted
    before, _ = decode_rgb(pii_clip.path)
    after, _ = decode_rgb(out)
    assert report.detections["centerface"] < len(before) / 3  # detection ran on a subset of frames
    for i, boxes in pii_clip.boxes.items():
        for kind, box in boxes.items():
            original, masked = sharpness(before[i], inner(box)), sharpness(after[i], inner(box))
            assert masked < 0.1 * original, f"frame {i}: {kind} {box} still sharp ({masked:.0f} vs {original:.0f})"


def test_nothing_else_changes_beyond_the_mask_margin(pii_clip, redacted):
    _, out, _ = redacted
    before, _ = decode_rgb(pii_clip.path)
    after, _ = decode_rgb(out)
    for i, boxes in pii_clip.boxes.items():
        outside = np.ones(before[i].shape[:2], bool)
        for box in boxes.values():
            x1, y1, x2, y2 = grown(box, 1.3 * 1.3, pii_clip.width, pii_clip.height)
            outside[y1:y2, x1:x2] = False
        diff = np.abs(before[i].astype(int) - after[i].astype(int))[outside]
        assert diff.mean() < 2.0, f"frame {i}: mean change {diff.mean():.2f} outside the masks"  # H.264 loss only
        assert np.percentile(diff, 99) < 16


def test_frames_timestamps_duration_and_audio_are_kept(pii_clip, redacted):
    report, out, _ = redacted
    _, pts_in = decode_rgb(pii_clip.path)
    _, pts_out = decode_rgb(out)
    assert pts_out == pts_in and report.frames_written == len(pts_in) == pii_clip.frames
    with open_video(str(pii_clip.path)) as a, open_video(str(out)) as b:
        info_a, info_b = describe(a, "in"), describe(b, "out")
    assert (info_b.width, info_b.height) == (info_a.width, info_a.height)
    assert info_b.duration == pytest.approx(info_a.duration, abs=1e-3)
    assert report.audio_streams == 1
    assert audio_packets(out) == audio_packets(pii_clip.path)  # copied packet for packet


def test_tracks_become_events(redacted):
    report, _, streamed = redacted
    categories = sorted(e.category for e in streamed)
    assert categories == ["face", "license_plate"], [e.to_dict() for e in streamed]
    plate = next(e for e in streamed if e.category == "license_plate")
    assert plate.value == "AB-123-CD" and plate.detector == "ppocr"
    face = next(e for e in streamed if e.category == "face")
    assert face.start == 0.0 and face.end > 1.5 and len(face.boxes) >= 3
    assert all(b.to_dict()["box"] for e in streamed for b in e.boxes)
    # streamed events are not kept as well: a camera's detectors run for weeks, their events by the million
    assert report.events == [] and report.tracks == len(streamed)
    assert report.detection_summary()["tracks"] == 2


@pytest.mark.parametrize(("mode", "shape"), [("fill", "rect"), ("pixelate", "ellipse"), ("blur", "rect")])
def test_hint_boxes_are_masked_with_each_mode(tmp_path, mode, shape):
    clip = make_clip(tmp_path / "still.mp4", seconds=0.5, plate=False, audio=False)
    x1, y1, x2, y2 = clip.boxes[0]["face"]
    path_box = (x1 - 4, y1 - 4, clip.boxes[clip.frames - 1]["face"][2] + 4, y2 + 4)  # where the face goes
    # a VLM finding with boxes at 0.1 s and 0.4 s: held for the margin around each; no detector runs
    finding = Finding("id_document", 0.1, 0.4, boxes=[TimedBox(0.1, path_box), TimedBox(0.4, path_box)])
    out = tmp_path / "still.redacted.mp4"
    options = RedactOptions(detect=(), mode=mode, shape=shape, crf=12, mask_scale=1.0)
    report = redact_video(str(clip.path), out, options, hints=[finding])
    assert report.events == [] and report.frames_masked == clip.frames  # hints mask but make no events
    before, _ = decode_rgb(clip.path)
    after, _ = decode_rgb(out)
    for i in range(clip.frames):
        face = inner(clip.boxes[i]["face"], 0.2)
        if mode == "fill":
            assert after[i][face[1] : face[3], face[0] : face[2]].mean() < 10
        elif mode == "blur":
            assert sharpness(after[i], face) < 0.1 * sharpness(before[i], face)
        else:  # blocks: most neighbouring pixels equal, unlike the photo
            grey = after[i][face[1] : face[3], face[0] : face[2]].astype(int).sum(axis=2)
            original = before[i][face[1] : face[3], face[0] : face[2]].astype(int).sum(axis=2)
            assert (np.abs(np.diff(grey, axis=1)) <= 6).mean() > 0.8 > (np.abs(np.diff(original, axis=1)) <= 6).mean()


def test_clips_hold_only_the_stretches_around_pii(tmp_path):
    clip = make_clip(tmp_path / "gap.mp4", seconds=3.0, fps=12, plate=False, visible=(1.0, 1.5))
    out = tmp_path / "gap.redacted.mp4"
    options = RedactOptions(detect=("face",), clips=True, padding=0.25, margin=0.25, crf=12)
    report = redact_video(str(clip.path), out, options)
    assert not out.exists() and len(report.clips) == 1
    path, start, end = report.clips[0]
    assert path.name == "gap.redacted.clip001.mp4"
    assert 0.4 <= start <= 0.76 and 1.74 <= end <= 2.1  # visible 1.0-1.5 s, +- margin and padding
    frames, pts = decode_rgb(path)
    assert pts[0] == 0 and len(frames) == report.frames_written == round((end - start) * 12) + 1
    assert audio_packets(path)  # the stretch keeps its audio


def test_a_run_leaves_no_redacted_output_of_an_earlier_run_beside_its_own(tmp_path):
    """A stale whole video or clip would pass for one of this run's outputs, masked with other settings."""
    clip = make_clip(tmp_path / "gap.mp4", seconds=3.0, fps=12, plate=False, visible=(1.0, 1.5))
    out = tmp_path / "gap.redacted.mp4"
    options = RedactOptions(detect=("face",), padding=0.25, margin=0.25)
    strangers = [tmp_path / "other.redacted.clip002.mp4", tmp_path / "gap.redacted.clip002.mp4.txt"]
    strangers += [tmp_path / "gap.redacted.clip002.cut.mp4"]  # a name the redactor never gives: a user's
    for path in [out, tmp_path / "gap.redacted.clip002.mp4", *strangers]:
        path.write_bytes(b"an earlier run's")
    report = redact_video(str(clip.path), out, replace(options, clips=True))
    assert [p.name for p, _, _ in report.clips] == ["gap.redacted.clip001.mp4"]
    ours = sorted(p.name for p in tmp_path.glob("gap.redacted*") if p not in strangers)
    assert ours == ["gap.redacted.clip001.mp4"]
    redact_video(str(clip.path), out, options)
    assert sorted(p.name for p in tmp_path.glob("gap.redacted*") if p not in strangers) == [out.name]
    assert all(p.read_bytes() == b"an earlier run's" for p in strangers)


def test_look_ahead_buffer_is_bounded(pii_clip, tmp_path):
    """Frames are pulled only margin + interval ahead of the frame being written."""
    pulled, written, ahead = [0], [0], []
    options = RedactOptions(detect=("face",), detect_interval=0.2, margin=0.25)
    with open_video(str(pii_clip.path)) as container:
        info = describe(container, str(pii_clip.path))

        def counted():
            for frame in itertools.islice(decode_video(container, info), 30):
                pulled[0] += 1
                yield frame

        def on_masks(t, boxes):
            written[0] += 1
            ahead.append(pulled[0] - written[0])

        report = redact_frames(counted(), info, tmp_path / "part.mp4", options, on_masks=on_masks)
    assert report.frames_written == 30
    assert max(ahead) <= (0.25 + 0.2 + 2 / 24) * 24 + 1


def test_frames_pushed_without_writing_wait_for_write_ready_and_get_the_same_masks(pii_clip, tmp_path):
    """The pipeline pushes a decoded burst, then writes what became ready in one go: the frames
    are held until then, and each is masked as when every push writes."""
    from streampii.redactor import Redactor

    options = RedactOptions(detect=("face",), detect_interval=0.2, margin=0.25)
    masks = {}
    for write in (True, False):
        masked = masks[write] = {}
        with open_video(str(pii_clip.path)) as container:
            info = describe(container, str(pii_clip.path))
            redactor = Redactor(
                info,
                tmp_path / f"write-{write}.mp4",
                options,
                on_masks=lambda t, boxes, masked=masked: masked.__setitem__(t, [b.tolist() for _, b in boxes]),
            )
            frames = decode_video(container, info)
            while burst := list(itertools.islice(frames, 16)):
                written = redactor.report.frames_written
                for frame in burst:
                    redactor.push(frame, write=write)
                if not write:
                    assert redactor.report.frames_written == written  # held, however many became ready
                    redactor.write_ready()  # now every frame a look-ahead old is written
                ahead = redactor.report.frames - redactor.report.frames_written
                assert ahead <= (0.25 + 0.2 + 2 / 24) * 24 + 1
            redactor.finish()
    assert masks[False] == masks[True] and len(masks[True]) == pii_clip.frames
    assert sum(bool(boxes) for boxes in masks[True].values()) > pii_clip.frames // 4


def test_real_face_clip_every_frame_masked(clips, tmp_path):
    out = tmp_path / "intel.redacted.mp4"
    report = redact_video(str(clips["intel_face-demographics-walking-and-pause"]), out, RedactOptions(detect=("face",)))
    assert report.frames == report.frames_written == report.frames_masked == 41
    assert sum(e.category == "face" for e in report.events) >= 3  # three people, one event each


def test_real_egoblur_face_is_found_and_tracked(clips, tmp_path):
    path = str(clips["egoblur_gen1_test_video"])
    with open_video(path) as container:
        info = describe(container, path)
        first = itertools.islice(decode_video(container, info), 45)  # 1.5 s of the 20 s clip is enough
        report = redact_frames(first, info, tmp_path / "ego.mp4", RedactOptions(detect=("face",), face_max_side=640))
    faces = [e for e in report.events if e.category == "face"]
    assert report.frames_masked == 45 and faces
    assert max(e.end - e.start for e in faces) > 1.0  # one face, one long track


def test_static_picture_reuses_detections_and_a_change_detects_again(tmp_path):
    """While nothing moves, the last boxes are reused instead of running the detector; when the
    face jumps elsewhere, detection runs again and the new place is masked from its first frame."""
    import av

    from tests.redact_clip import background, face_crop

    face, fbox = face_crop()
    fps, frames, jump = 24, 72, 48
    base = background(480, 272)
    path = tmp_path / "still.mp4"
    boxes = {}
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 480, 272, "yuv420p"
        for i in range(frames):
            x, y = (40, 40) if i < jump else (300, 120)
            image = base.copy()
            image[y : y + face.shape[0], x : x + face.shape[1]] = face
            boxes[i] = (x + fbox[0], y + fbox[1], x + fbox[2], y + fbox[3])
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    out_path = tmp_path / "still.redacted.mp4"
    report = redact_video(str(path), out_path, RedactOptions(detect=("face",), detect_interval=0.1, crf=12))
    assert report.reused["centerface"] > 2 * report.detections["centerface"]
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    for i in range(frames):
        box = inner(boxes[i])
        assert sharpness(after[i], box) < 0.1 * sharpness(before[i], box), f"frame {i} face visible"


def arriving_face_clip(path, fps: int, frames: int, arrive: int, leave: int | None = None) -> tuple[int, int, int, int]:
    """A 480x272 clip of a still, empty scene where a face appears at frame ``arrive`` and stays
    (until frame ``leave``, excluded); returns the face's box."""
    import av

    from tests.redact_clip import background, face_crop

    face, fbox = face_crop()
    base = background(480, 272)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 480, 272, "yuv420p"
        for i in range(frames):
            image = base.copy()
            if arrive <= i < (frames if leave is None else leave):
                image[80 : 80 + face.shape[0], 200 : 200 + face.shape[1]] = face
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return 200 + fbox[0], 80 + fbox[1], 200 + fbox[2], 80 + fbox[3]


def test_empty_still_picture_is_looked_at_less_often_and_a_newcomer_is_masked_from_its_first_frame(tmp_path):
    """Where nothing was found and nothing moves, the detector looks every `idle_interval` instead
    of every `detect_interval`; a face that then appears is still masked on every frame it is in,
    because its mask starts `margin` (more than the idle interval) before its first detection."""
    frames, arrive = 60, 40  # 2 s of an empty scene, then a face for 1 s
    path = tmp_path / "arrive.mp4"
    box = arriving_face_clip(path, 20, frames, arrive)
    options = RedactOptions(detect=("face",), detect_interval=0.1, idle_interval=0.3, margin=0.5, crf=12)
    out_path = tmp_path / "arrive.redacted.mp4"
    report = redact_video(str(path), out_path, options)
    looks = report.detections["centerface"] + report.reused["centerface"]
    # every 0.1 s while the face is there (1 s), about every 0.3 s over the empty 2 s
    assert looks <= 10 + 2 / 0.3 + 2, looks
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    for i in range(arrive, frames):
        assert sharpness(after[i], inner(box)) < 0.1 * sharpness(before[i], inner(box)), f"frame {i} face visible"


def test_a_face_in_view_for_less_than_the_idle_interval_is_masked(tmp_path):
    """An empty still picture is looked at every `idle_interval` (0.3 s), but a change is looked at
    within `detect_interval` (0.1 s): a face in view for 0.12 s between two idle looks was never
    looked at, and shown unmasked."""
    fps, frames, arrive, leave = 25, 60, 37, 40  # the face on 1.48-1.56 s; idle looks at 1.4 and 1.7 s
    path = tmp_path / "blink.mp4"
    box = arriving_face_clip(path, fps, frames, arrive, leave)
    options = RedactOptions(detect=("face",), detect_interval=0.1, idle_interval=0.3, margin=0.5, crf=12)
    out_path = tmp_path / "blink.redacted.mp4"
    report = redact_video(str(path), out_path, options)
    assert [e.category for e in report.events] == ["face"]
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    for i in range(arrive, leave):
        assert sharpness(after[i], inner(box)) < 0.1 * sharpness(before[i], inner(box)), f"frame {i} face visible"


def test_with_a_detection_interval_beyond_the_margin_every_frame_between_looks_is_masked(tmp_path):
    """Looks 2 s apart and masks held 0.5 s: a face that came just after a look, and one still there
    after the last look before the input ends, was in view unmasked. A box is held at least the
    interval before a track's first and after its last detection."""
    frames, arrive = 70, 25  # looks at 0 s (empty) and 2 s; the face from 1.25 s to the end, 3.45 s
    path = tmp_path / "sparse.mp4"
    box = arriving_face_clip(path, 20, frames, arrive)
    options = RedactOptions(detect=("face",), detect_interval=2.0, margin=0.5, crf=12)
    out_path = tmp_path / "sparse.redacted.mp4"
    report = redact_video(str(path), out_path, options)
    assert report.detections["centerface"] + report.reused["centerface"] == 2  # at 0 and 2 s
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    for i in range(arrive, frames):
        assert sharpness(after[i], inner(box)) < 0.1 * sharpness(before[i], inner(box)), f"frame {i} face visible"


def test_detectors_on_an_empty_still_picture_share_thumbnails_and_a_change_still_runs_each_in_time(
    tmp_path, monkeypatch
):
    """Two detectors that found nothing, looking every 0.3 and 0.5 s: the second takes the first's
    thumbnails for its looks instead of its own. When the picture changes, each runs again no
    later than its own interval after the change."""
    import av

    import streampii.redactor as redactor
    from streampii.detectors import Detections
    from tests.redact_clip import background

    current, runs = [0.0], {}

    class Blind:  # finds nothing; records when it ran
        def __init__(self, name):
            self.name = name

        def detect(self, image):
            runs.setdefault(self.name, []).append(current[0])
            return Detections(detector=self.name)

    fps, frames, change = 10, 60, 41  # 4.1 s of a still picture, then another one
    still, other = background(320, 192), background(320, 192)[::-1].copy()
    path = tmp_path / "still.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(still if i < change else other, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    thumbnails = []
    real = redactor._thumbnail
    monkeypatch.setattr(redactor, "_thumbnail", lambda decoded: thumbnails.append(decoded.t) or real(decoded))
    options = RedactOptions(detect_interval=0.1, text_interval=0.5, idle_interval=0.3, margin=0.5)
    blind = [(Blind("face"), 0.1), (Blind("text"), 0.5)]
    report = redact_noting_time(path, tmp_path / "out.mp4", options, blind, current)
    still_thumbs = [t for t in thumbnails if t < change / fps]
    # the face detector's alone: its change checks, one every 0.1 s (looks every 0.3 s among them);
    # the text detector's own 0.5-s looks would add theirs
    assert len(still_thumbs) <= 4.1 / 0.1 + 2, still_thumbs
    assert report.reused["text"] >= len(still_thumbs) - 2  # nearly every thumbnail was a look for both
    after = change / fps
    for name, interval in (("face", 0.3), ("text", 0.5)):
        assert runs[name][0] == 0.0  # the first look runs the detector
        first_after = min(t for t in runs[name] if t >= after - 1e-6)
        assert first_after <= after + interval + 1e-6, (name, runs[name])


def test_where_part_of_the_picture_changes_only_that_part_is_looked_at_and_every_face_stays_masked(tmp_path):
    """A face sits still while a grey square crosses the bottom of the frame, and a second face
    appears in the square's path: CenterFace looks at the changed parts alone (with context), the
    still face keeps its boxes from the run before, and both faces are masked on every frame."""
    import av

    from tests.redact_clip import background, face_crop

    face, fbox = face_crop()
    fps, frames, arrive = 10, 40, 20
    width, height = 640, 360
    base = background(width, height)
    still = (24, 24)
    newcomer = (400, 150)
    path = tmp_path / "part.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = base.copy()
            image[still[1] : still[1] + 96, still[0] : still[0] + 96] = face
            x = 160 + 8 * i
            image[280:328, x : x + 48] = 128
            if i >= arrive:
                image[newcomer[1] : newcomer[1] + 96, newcomer[0] : newcomer[0] + 96] = face
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    out_path = tmp_path / "part.redacted.mp4"
    options = RedactOptions(detect=("face",), detect_interval=0.1, crf=12)
    report = redact_video(str(path), out_path, options)
    # after the first look, nearly every run is on the changed parts alone
    assert report.regions["centerface"] >= report.detections["centerface"] - 3, report
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    boxes = {
        name: (x + fbox[0], y + fbox[1], x + fbox[2], y + fbox[3])
        for name, (x, y) in {"still": still, "new": newcomer}.items()
    }
    for i in range(frames):
        for name, box in boxes.items():
            if name == "new" and i < arrive:
                continue
            assert sharpness(after[i], inner(box)) < 0.1 * sharpness(before[i], inner(box)), (
                f"frame {i}: {name} face visible"
            )
    faces = [e for e in report.events if e.category == "face"]
    assert len(faces) == 2, faces  # one track each: the still face's boxes held across the region runs


def test_where_a_plate_moves_ppocr_reads_that_part_alone_and_every_plate_stays_masked(tmp_path):
    """A parked car's plate sits still while another plate crosses the bottom of the frame: PP-OCR
    reads the changed part alone (at the frame's scale), the parked plate keeps its box from the
    run before, and both plates are masked on every frame, each one track."""
    from tests.redact_clip import background, plate_image

    fps, frames = 10, 40
    width, height = 640, 360
    base = background(width, height)
    parked, moving = plate_image("KA-4521-B"), plate_image("MZ-7730-T")
    still = (30, 40)
    boxes = {
        i: {
            "parked": (still[0], still[1], still[0] + parked.shape[1], still[1] + parked.shape[0]),
            "moving": (40 + 8 * i, 280, 40 + 8 * i + moving.shape[1], 280 + moving.shape[0]),
        }
        for i in range(frames)
    }

    def draw(i, t):
        image = base.copy()
        for (x0, y0, x1, y1), plate in zip(boxes[i].values(), (parked, moving), strict=True):
            image[y0:y1, x0:x1] = plate
        return image

    path = write_video(
        tmp_path / "plates.mp4", [i / fps for i in range(frames)], (width, height), draw, codec_options=SHARP
    )
    out_path = tmp_path / "plates.redacted.mp4"
    options = RedactOptions(detect=("plate",), text_interval=0.5, crf=12)
    report = redact_video(str(path), out_path, options)
    assert report.detections["ppocr"] >= 7 and report.regions["ppocr"] >= report.detections["ppocr"] - 1, report
    before, _ = decode_rgb(path)
    after, _ = decode_rgb(out_path)
    for i in range(frames):
        for name, box in boxes[i].items():
            assert sharpness(after[i], inner(box)) < 0.1 * sharpness(before[i], inner(box)), f"frame {i}: {name} plate"
    plates = sorted(e.value for e in report.events if e.category == "license_plate")
    assert plates == ["KA-4521-B", "MZ-7730-T"], report.events  # one track each, read in the crops as well


def test_a_still_scene_needs_no_run_and_a_faint_change_is_looked_at_within_static_max_age(tmp_path):
    """A still picture costs no detector run after the first; a faint patch (a block mean moving
    by 8 grey levels, under the 12 that count at once) is looked at alone within
    `static_max_age`, and the whole frame again after `whole_max_age`."""
    from streampii.detectors import Detections
    from tests.redact_clip import background

    current, runs = [0.0], []

    class Looker:  # takes crops of planes, finds nothing; records when and what it looked at
        name, kinds, takes_crops = "looker", ("face",), True

        def detect(self, image):
            raise AssertionError("a detector that takes planes is given planes")

        def detect_planes(self, planes, frame_size=None):
            runs.append((current[0], planes[0].shape, frame_size))
            return Detections(detector=self.name)

    fps, frames, patch = 10, 140, 20  # 14 s; a faint patch from 2 s on
    width, height = 640, 360
    still = background(width, height)
    faint = still.copy()
    faint[64:112, 160:208] = np.clip(faint[64:112, 160:208].astype(int) + 8, 0, 255).astype(np.uint8)
    times = [i / fps for i in range(frames)]
    path = write_video(
        tmp_path / "faint.mp4", times, (width, height), lambda i, t: still if i < patch else faint, codec_options=SHARP
    )

    def looks(whole_max_age):
        runs.clear()
        options = RedactOptions(static_max_age=5.0, whole_max_age=whole_max_age, faint_threshold=3)
        redact_noting_time(path, tmp_path / "out.mp4", options, [(Looker(), 0.1)], current)
        return list(runs)

    first, crop = looks(60.0)
    assert first == (0.0, (height, width), None)  # the first look: the whole frame
    t, shape, frame_size = crop  # then one look, at the faint patch alone, once the first is 5 s old
    assert 5.0 <= t <= 5.0 + 0.3 + 1e-6 and frame_size == (width, height)
    assert 48 <= shape[0] < height and 48 <= shape[1] < width, shape
    # (the still picture after it: no run at all, nor at 10 s, when nothing had changed since)

    whole = [(t, shape) for t, shape, _ in looks(8.0) if shape == (height, width)]
    assert [t for t, _ in whole][:2] == [0.0, pytest.approx(8.1, abs=0.35)], whole


def decoded_audio(path, rate):
    """The first audio stream of ``path`` as mono float32 at ``rate``, and its first time (seconds)."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        first, parts = None, []
        for frame in container.decode(audio=0):
            first = float(frame.pts * frame.time_base) if first is None else first
            parts += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    return np.concatenate(parts), first


@pytest.mark.parametrize(
    ("name", "codec", "layout", "copied"),
    [
        ("dashcam.avi", "pcm_u8", "mono", False),  # MP4 holds no 8-bit PCM
        ("camera.mov", "pcm_mulaw", "mono", False),  # G.711 from IP cameras
        # AVI names no channel order: the MP4 muxer takes 16-bit PCM yet refuses it as it closes
        ("capture.avi", "pcm_s16le", "stereo", False),
        # the same codec with its channels named: the muxer takes it (as ipcm), few players play it
        ("capture.mov", "pcm_s16le", "stereo", False),
        ("capture.mkv", "pcm_f32le", "mono", False),  # mono: the muxer takes it too (as fpcm)
        ("music.mkv", "flac", "stereo", True),  # MP4 holds FLAC: copied
        # more channels than AAC holds (8): mixed to mono, also where FFmpeg knows no layout (9)
        ("field.mkv", "pcm_s16le", "hexadecagonal", False),
        ("field.mkv", "pcm_s16le", "FL+FR+FC+LFE+BL+BR+FLC+FRC+BC", False),
    ],
)
def test_audio_that_mp4_cannot_hold_is_encoded_to_aac_in_sync(tmp_path, name, codec, layout, copied):
    source = tmp_path / name
    sound = write_with_audio(source, codec, layout)
    out = tmp_path / "out.redacted.mp4"
    report = redact_video(str(source), out, RedactOptions(detect=()))
    assert report.audio_streams == 1 and report.audio_reencoded == ([] if copied else [codec])
    channels = len(sound)
    mixed = [f"{codec}: {channels} channels to mono"] if channels > 8 else []
    assert report.audio_downmixed == report.summary()["audio_downmixed"] == mixed
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == (codec if copied else "aac")
        assert container.streams.audio[0].channels == (1 if mixed else channels)
    heard, first = decoded_audio(out, 8000)
    assert first == pytest.approx(0.0, abs=1e-3) and abs(len(heard) - sound.shape[1]) <= 1024
    original = sound.mean(axis=0)[: len(heard) - 1024]
    lags = range(-200, 201)
    best = max(lags, key=lambda k: np.dot(original[200:-200], heard[200 + k : len(original) - 200 + k]))
    assert best == 0  # the same sound at the same time (noise: no other shift matches)
    assert np.corrcoef(original, heard[: len(original)])[0, 1] > 0.9


@pytest.mark.parametrize("cut", [False, True])
def test_a_video_cut_short_by_a_stop_gets_the_audio_of_its_own_stretch(tmp_path, cut):
    """A run stopped half-way wrote half the video and all of the input's audio after it: the file
    said the full duration and played the rest as a frozen frame."""
    import av
    from videos import write_with_audio

    from streampii.redactor import Redactor

    path = tmp_path / "talk.mp4"
    write_with_audio(path, "aac", seconds=4.0)
    with open_video(str(path)) as container:
        info = describe(container, str(path))
        redactor = Redactor(info, tmp_path / "talk.redacted.mp4", RedactOptions(detect=("face",)), str(path))
        for decoded in itertools.islice(decode_video(container, info), 24):  # 2 s of 4
            redactor.push(decoded)
        redactor.finish(cut=cut)
    with av.open(str(tmp_path / "talk.redacted.mp4")) as out:
        audio = out.streams.audio[0]
        ends = [float((p.pts + p.duration) * audio.time_base) for p in out.demux(audio) if p.pts is not None]
    assert max(ends) == pytest.approx(2.0 if cut else 4.0, abs=0.15)


@pytest.mark.parametrize("ts_offset", [1000, 95442])  # a recorder's clock; one that wraps 33 bits (starts < 0)
def test_an_input_that_does_not_start_at_zero_gives_a_video_that_does(tmp_path, ts_offset):
    """MPEG-TS times run on the recorder's clock: the redacted MP4 kept them and began with an
    edit list of that much nothing (hours of it), or, from a negative start, hid its first frames.
    Times now count from the input's start, its sound's here (0.5 s before the picture), as a
    player and ffmpeg count them: all of the sound, in sync."""
    source = tmp_path / "camera.ts"
    times = [0.5 + i / 25 for i in range(25)]
    write_video(source, times, audio_seconds=1.5, container_options={"output_ts_offset": str(ts_offset)})
    out = tmp_path / "camera.redacted.mp4"
    report = redact_video(str(source), out, RedactOptions(detect=()))

    def times_of(path):
        with av.open(str(path)) as container:
            packets = [p for p in container.demux() if p.size]
            video = sorted(float(p.pts * p.time_base) for p in packets if p.stream.type == "video")
            sound = [float(p.pts * p.time_base) for p in packets if p.stream.type == "audio"]
            return video, sound, container.duration / av.time_base

    video_in, sound_in, duration_in = times_of(source)
    video_out, sound_out, duration_out = times_of(out)
    start = min(sound_in[0], video_in[0])
    assert report.frames_written == 25 and video_out == pytest.approx([t - start for t in video_in], abs=1e-3)
    assert sound_out == pytest.approx([t - start for t in sound_in], abs=1e-3) and sound_out[0] == 0
    assert 0.5 < video_out[0] < 0.6 and duration_out == pytest.approx(duration_in, abs=0.05)


@pytest.mark.parametrize(("rotation", "shown"), [(0, Fraction(64, 45)), (90, Fraction(45, 64))])
def test_non_square_pixels_keep_their_shape(tmp_path, rotation, shown):
    """Anamorphic footage (PAL DV, 720x576 shown at 16:9) lost its pixels' aspect: the redacted
    video played squeezed to 5:4. Turned upright, a pixel is as high as it was wide."""
    source = tmp_path / "dv.mp4"
    write_video(source, [i / 25 for i in range(5)], (720, 576), rotation=rotation, sample_aspect_ratio=Fraction(64, 45))
    out = tmp_path / "dv.redacted.mp4"
    redact_video(str(source), out, RedactOptions(detect=()))
    with av.open(str(out)) as container:
        assert container.streams.video[0].sample_aspect_ratio == shown


# AVCOL_* values: range 2 full (1 limited); matrix, primaries, transfer 1 BT.709; 9/9/18 BT.2020 HLG
BT709_FULL = {"color_range": 2, "colorspace": 1, "color_primaries": 1, "color_trc": 1}
BT2020_HLG = {"color_range": 1, "colorspace": 9, "color_primaries": 9, "color_trc": 18}


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "colour", "rotation", "masked"),
    [
        ("libx265", "yuv420p", BT709_FULL, 0, False),  # a phone's full-range HEVC, frames as decoded
        ("libx264", "yuv420p", BT709_FULL, 90, False),  # turned upright: every frame through RGB
        ("libx264", "yuv422p", BT709_FULL, 0, True),  # masked in RGB, converted back
        ("libx265", "yuv420p10le", BT2020_HLG, 0, False),  # 10-bit HDR, written in 8 bits
    ],
)
def test_the_input_colours_are_kept(tmp_path, codec, pix_fmt, colour, rotation, masked):
    """The redacted video had no colour description: a player took full-range, BT.709 or BT.2020
    pictures for limited-range BT.601 (washed out or crushed, other hues), and frames that went
    through RGB came back as BT.601. It now says what the input says, and shows the same colours."""
    source = tmp_path / "phone.mp4"
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (3, 4, 3), np.uint8)  # flat colour blocks: compression barely moves them
    picture = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)
    write_video(
        source,
        [i / 25 for i in range(3)],
        (64, 48),
        lambda i, t: picture,
        codec,
        rotation,
        pix_fmt=pix_fmt,
        colour=colour,
    )
    out = tmp_path / "phone.redacted.mp4"
    corner = (0, 0, 14, 14)  # masked on every frame with masked: compared only elsewhere
    hints = [Finding("id_document", 0.0, 0.1, boxes=[TimedBox(0.0, corner), TimedBox(0.1, corner)])] if masked else []
    options = RedactOptions(detect=(), crf=10, mask_scale=1.0, margin=0.1)
    report = redact_video(str(source), out, options, hints=hints)
    assert report.frames_masked == (3 if masked else 0)
    with av.open(str(out)) as container:
        context = container.streams.video[0].codec_context
        assert {name: getattr(context, name) for name in colour} == colour
    before, _ = decode_rgb(source)
    after, _ = decode_rgb(out)
    for i in range(3):
        shown = np.rot90(before[i], k=rotation // 90).astype(int)
        difference = np.abs(after[i].astype(int) - shown)[24:, 24:]  # away from the mask and its margin
        assert difference.mean() < 5, difference.mean(axis=(0, 1))


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p"])
def test_interlaced_input_gives_interlaced_output(tmp_path, pix_fmt):
    """Broadcast and DVR video (1080i, 576i) was written as progressive frames: a player showed the
    fields' combs instead of deinterlacing. The output is coded as fields, in the input's order,
    also frames masked in place (4:2:0) or through RGB (4:2:2), masked here on every frame."""
    source = tmp_path / "dvr.ts"
    rng = np.random.default_rng(7)
    pictures = [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(4)]  # lines differ field to field
    write_video(source, [i / 25 for i in range(4)], (64, 48), lambda i, t: pictures[i], pix_fmt=pix_fmt, fields="tff")
    out = tmp_path / "dvr.redacted.mp4"
    corner = (0, 0, 16, 16)
    hints = [Finding("id_document", t, t, boxes=[TimedBox(t, corner)]) for t in (0.0, 0.04, 0.08, 0.12)]
    report = redact_video(str(source), out, RedactOptions(detect=(), margin=0.01), hints=hints)
    assert report.frames_masked == 4
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4 and all(f.interlaced_frame for f in frames)
    assert [first_field(f) for f in frames] == ["top"] * 4


@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_a_rotated_input_is_masked(tmp_path, rotation):
    """A phone's portrait video (a rotation tag) came out upright but unmasked: the masks were drawn
    on the upright copy after it had been turned into the frame to encode. The box, in upright
    pixels, is now filled there."""
    source = tmp_path / "phone.mp4"
    rng = np.random.default_rng(9)
    picture = np.repeat(np.repeat(rng.integers(64, 256, (3, 4, 3), np.uint8), 16, axis=0), 16, axis=1)
    write_video(
        source, [i / 25 for i in range(3)], (64, 48), lambda i, t: picture, rotation=rotation, pix_fmt="yuv444p"
    )
    box = (4, 4, 20, 20)  # upright pixels
    hints = [Finding("id_document", 0.0, 0.08, boxes=[TimedBox(0.0, box), TimedBox(0.08, box)])]
    out = tmp_path / "phone.redacted.mp4"
    report = redact_video(str(source), out, RedactOptions(detect=(), mode="fill", mask_scale=1.0, crf=10), hints=hints)
    assert report.frames_masked == 3
    after, _ = decode_rgb(out)
    for frame in after:
        assert frame.shape[:2] == ((64, 48) if rotation in (90, 270) else (48, 64))
        assert frame[9:15, 9:15].max() < 40  # filled black (an ellipse in the box)
        assert frame[30:, 30:].min() > 40  # the rest still shows the picture


class StillFace:
    """A detector that finds the same face on every frame: a person at a desk, a parked car."""

    name = "centerface"

    def detect(self, image: np.ndarray):
        from streampii.detectors import Detections

        return Detections(np.array([[4, 4, 20, 20]]), np.array([0.9]), ["face"], [None], self.name)


def test_a_cameras_track_in_view_for_long_is_logged_in_parts_and_its_keyframes_stay_bounded():
    from streampii.events import LIVE_EVENT_SPAN
    from streampii.redactor import Redactor
    from streampii.source import DecodedFrame, VideoInfo

    info = VideoInfo("rtsp://cam", 32, 32, "h264", 1.0, None, None, 0, 0.0, False, live=True)
    events, most = [], 0
    redactor = Redactor(
        info, None, RedactOptions(detect=("face",)), on_event=events.append, detectors=[(StillFace(), 0.1)]
    )
    picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90, np.uint8), format="rgb24")
    seconds = int(2.5 * LIVE_EVENT_SPAN)
    for t in range(seconds):  # one frame a second
        redactor.push(DecodedFrame(float(t), picture))
        most = max([most, *(len(tr.keyframes) for tr in redactor.tracker.tracks)])
    assert len(events) == 2  # logged while the face is still in view, not only once it leaves
    assert most <= LIVE_EVENT_SPAN + 2  # a track holds at most one part's keyframes
    redactor.finish()
    assert [(e.start, e.end) for e in events] == [
        (0.0, LIVE_EVENT_SPAN),
        (LIVE_EVENT_SPAN, 2 * LIVE_EVENT_SPAN),
        (2 * LIVE_EVENT_SPAN, seconds - 1),
    ]
    assert redactor.report.tracks == 3 and {e.category for e in events} == {"face"}


class LeavingFace(StillFace):
    """The still face, found up to ``until`` (seconds) and gone after."""

    def __init__(self, until: float) -> None:
        self.until, self.t = until, 0.0

    def detect(self, image: np.ndarray):
        found = super().detect(image)
        return found if self.t <= self.until else found[np.zeros(1, bool)]


def test_a_cameras_track_that_leaves_right_after_a_split_logs_no_second_event(monkeypatch):
    import streampii.redactor
    from streampii.redactor import Redactor
    from streampii.source import DecodedFrame, VideoInfo

    monkeypatch.setattr(streampii.redactor, "LIVE_EVENT_SPAN", 5.0)
    info = VideoInfo("rtsp://cam", 32, 32, "h264", 10.0, None, None, 0, 0.0, False, live=True)
    face, events, masked = LeavingFace(until=5.0), [], {}
    redactor = Redactor(
        info,
        None,
        RedactOptions(detect=("face",), static_threshold=0),
        on_event=events.append,
        detectors=[(face, 0.1)],
        on_masks=lambda t, boxes: masked.__setitem__(t, bool(boxes)),
    )
    picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90, np.uint8), format="rgb24")
    for i in range(80):
        face.t = i / 10
        redactor.push(DecodedFrame(face.t, picture))
        if face.t == 5.0:  # split on this frame: a killed run's state holds no open part of it
            assert redactor.open_events() == []
    redactor.finish()
    # the part after the split saw nothing new: no zero-length copy of the first part's last box
    assert [(e.start, e.end) for e in events] == [(0.0, 5.0)] and redactor.report.tracks == 1
    assert all(masked[t] for t in masked if t <= 5.5)  # the box still held a margin past the last look


class BrightSquare:
    """A detector that finds the white square ``draw_square`` puts on some frames."""

    name = "centerface"

    def detect(self, image: np.ndarray):
        from streampii.detectors import Detections

        found = Detections(np.array([[8, 8, 24, 24]], np.float32), np.array([0.9]), ["face"], [None], self.name)
        return found if image[16, 16].mean() > 200 else found[np.zeros(1, bool)]


def draw_square(spans):
    def draw(i: int, t: float) -> np.ndarray:
        image = np.full((32, 48, 3), 60, np.uint8)
        if any(a <= t + 1e-6 and t <= b + 1e-6 for a, b in spans):
            image[8:24, 8:24] = 250
        return image

    return draw


def test_stretches_whose_padding_meets_are_one_clip_with_its_padding(tmp_path):
    # masks 0.55-1.25 s and 2.15-2.85 s: 0.9 s apart, less than the padding after the one and before the other
    spans = [(0.8, 1.0), (2.4, 2.6)]
    path = write_video(tmp_path / "in.mp4", [i / 10 for i in range(40)], (48, 32), draw_square(spans))
    options = RedactOptions(detect=("face",), clips=True, padding=0.5, margin=0.25, static_threshold=0)
    report = redact_video(str(path), tmp_path / "in.redacted.mp4", options, detectors=[(BrightSquare(), 0.1)])
    # (not two files cut at 1.75 s, the second with 0.35 s before its mask)
    assert [(p.name, a, b) for p, a, b in report.clips] == [("in.redacted.clip001.mp4", 0.0, 3.3)]
    assert len(decode_rgb(report.clips[0][0])[0]) == report.frames_written == 34
