"""Tracks: linking, interpolation between detections, holding before and after, events."""

from __future__ import annotations

import numpy as np

from streampii.detectors import Detections
from streampii.tracks import Tracker, TrackOptions, track_detections


def dets(*boxes, category="face", value=None):
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.full(len(boxes), 0.9),
        [category] * len(boxes),
        [value] * len(boxes),
        "test",
    )


def moving(t):  # a face moving 100 px per second to the right
    return (100 * t, 10, 100 * t + 40, 50)


def test_moving_object_is_one_track_interpolated_and_held():
    tracker = Tracker(TrackOptions(link_gap=0.3, margin=0.2))
    for t in (0.0, 0.2, 0.4, 0.6):
        tracker.update(t, dets(moving(t)))
    assert len(tracker.tracks) == 1
    track = tracker.tracks[0]
    np.testing.assert_allclose(track.box_at(0.3), moving(0.3), atol=1e-6)  # between detections
    held = track.box_at(0.75)  # after the last detection: the box, stretched along the motion
    assert held[0] <= moving(0.6)[0] and held[2] >= moving(0.75)[2]
    assert track.box_at(-0.15) is not None and track.box_at(-0.25) is None and track.box_at(0.85) is None


def test_missed_detections_are_bridged_and_far_boxes_are_new_tracks():
    tracker = Tracker(TrackOptions(link_gap=0.5, margin=0.1))
    tracker.update(0.0, dets((0, 0, 40, 40), (300, 300, 340, 340)))
    tracker.update(0.4, dets((10, 0, 50, 40)))  # the second object is missed once
    tracker.update(0.5, dets((12, 0, 52, 40), (302, 300, 342, 340)))
    assert len(tracker.tracks) == 2
    assert tracker.tracks[1].box_at(0.25) is not None  # bridged: no frame shows it unmasked
    tracker.update(1.5, dets((14, 0, 54, 40)))  # after a long gap: a new track
    assert len(tracker.tracks) == 3


def test_categories_do_not_mix_but_plate_and_text_do():
    tracker = Tracker()
    tracker.update(0.0, dets((0, 0, 40, 20), category="license_plate", value="AB-123"))
    tracker.update(0.1, dets((0, 0, 40, 20), category="face"))
    tracker.update(0.2, dets((1, 0, 41, 20), category="text", value="AB-I23"))
    tracker.update(0.3, dets((1, 0, 41, 20), category="license_plate", value="AB-123"))
    families = sorted(tr.family for tr in tracker.tracks)
    assert families == ["face", "text"]
    plate = next(tr for tr in tracker.tracks if tr.family == "text")
    assert plate.category == "license_plate" and plate.value == "AB-123"


def test_track_detections_yields_events_once_final_and_is_deterministic():
    stream = [(t / 10, dets(moving(t / 10))) for t in range(10)] + [(3.0, dets((500, 500, 540, 540)))]
    first = [tr.to_event("clip.mp4", box_interval=0.25).to_dict() for tr in track_detections(stream)]
    second = [tr.to_event("clip.mp4", box_interval=0.25).to_dict() for tr in track_detections(stream)]
    assert first == second and len(first) == 2
    event = first[0]
    assert event["category"] == "face" and event["start"] == 0.0 and event["end"] == 0.9
    assert event["detector"] == "test" and 3 <= len(event["boxes"]) <= 5  # sampled, not one per detection
    assert event["boxes"][-1]["t"] == 0.9
