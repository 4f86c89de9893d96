"""Findings of overlapping windows, parsed from Qwen2-VL-style answers, merged into events."""

from __future__ import annotations

from qwen_helpers import make_window

from streampii.analyzers.parse import parse_answer
from streampii.events import EventMerger

# frames at 1 fps with jittered PTS; 8-frame windows every 6 frames (stride 6 s)
TIMES = [i + (0.04 if i % 3 else 0.0) for i in range(26)]


def windows():
    starts = [0, 6, 12, 18]
    return [make_window(TIMES[s : s + 8], index=n, first=s) for n, s in enumerate(starts)]


def run(answers: list[str], gap: float = 6.0) -> list[dict]:
    merger = EventMerger("clip.mp4", gap=gap)
    events = []
    for window, answer in zip(windows(), answers, strict=False):
        events += merger.add(parse_answer(answer, window).findings, now=window.start)
    events += merger.close()
    return [e.to_dict() for e in events]


def plate(first: int, last: int, value: str | None = None, box: str = "") -> str:
    value_json = f'"{value}"' if value else "null"
    extra = f', "box": {box}' if box else ""
    return (
        f'{{"category": "license_plate", "first_frame": {first}, "last_frame": {last}, '
        f'"value": {value_json}, "confidence": 0.8{extra}}}'
    )


def answer(*findings: str) -> str:
    return '```json\n{"findings": [' + ", ".join(findings) + "]}\n```"


def test_same_value_in_overlapping_windows_is_one_event_with_pts_times():
    events = run([answer(plate(5, 8, "AB 123")), answer(plate(1, 6, "ab-123"))])
    assert len(events) == 1
    assert (events[0]["start"], events[0]["end"]) == (TIMES[4], TIMES[11])
    assert events[0]["value"] == "AB 123" and events[0]["source"] == "clip.mp4"


def test_unread_value_joins_the_read_one_but_different_values_stay_apart():
    events = run([answer(plate(7, 8, "AB123"), plate(2, 3, "XY999")), answer(plate(1, 2))])
    assert [(e["value"], e["start"], e["end"]) for e in events] == [
        ("XY999", TIMES[1], TIMES[2]),
        ("AB123", TIMES[6], TIMES[7]),
    ]


def test_gap_longer_than_stride_starts_a_new_event():
    events = run([answer(plate(1, 1, "AB123")), answer(), answer(plate(8, 8, "AB123"))])
    assert [(e["start"], e["end"]) for e in events] == [(TIMES[0], TIMES[0]), (TIMES[19], TIMES[19])]


def test_faces_told_apart_by_boxes():
    left = '{"category": "face", "first_frame": 1, "last_frame": 8, "box": <|box_start|>(10,10),(200,400)<|box_end|>}'
    right = '{"category": "face", "first_frame": 1, "last_frame": 8, "box": [700, 100, 900, 500]}'
    left2 = '{"category": "face", "first_frame": 1, "last_frame": 4, "box": [20, 15, 210, 420]}'
    events = run([answer(left, right), answer(left2)])
    assert len(events) == 2
    by_x = sorted(events, key=lambda e: e["boxes"][0]["box"][0])
    assert by_x[0]["end"] == TIMES[9] and len(by_x[0]["boxes"]) == 2
    assert by_x[1]["end"] == TIMES[7] and len(by_x[1]["boxes"]) == 1


def test_other_with_different_labels_stays_apart():
    events = run([answer('{"category": "tattoo"}', '{"category": "barcode"}')])
    assert sorted(e["label"] for e in events) == ["barcode", "tattoo"]


def test_events_are_final_once_no_later_window_can_extend_them():
    merger = EventMerger("clip.mp4", gap=6.0)
    w = windows()
    assert merger.add(parse_answer(answer(plate(1, 1, "AB1")), w[0]).findings, now=w[0].start) == []
    assert merger.add([], now=w[1].start) == []  # 6.04 - 0.0 <= gap: could still be extended
    final = merger.add([], now=w[2].start)
    assert [e.value for e in final] == ["AB1"]
    assert merger.close() == []


def test_deterministic():
    answers = [answer(plate(5, 8, "AB1"), plate(5, 8), '{"category": "face"}'), answer(plate(1, 3), plate(1, 2, "AB1"))]
    assert run(answers) == run(answers)


def test_a_cameras_event_in_view_for_long_is_logged_in_parts():
    """A sign the VLM sees in every window of a camera: an event each ``max_span``, logged while it
    is still in view, and the merger never holds more than one part's boxes."""
    from streampii.analyzers import Finding, TimedBox
    from streampii.events import LIVE_EVENT_SPAN

    merger = EventMerger("rtsp://cam", gap=6.0, max_span=LIVE_EVENT_SPAN)
    final, most = [], 0
    for start in range(0, int(2.5 * LIVE_EVENT_SPAN), 6):  # 8-s windows every 6 s
        boxes = [TimedBox(start + i, (10, 10, 50, 50)) for i in range(8)]
        final += merger.add([Finding("contact_info", start, start + 7, value="555-0100", boxes=boxes)], now=start)
        most = max([most, *(len(e.boxes) for e in merger._open)])  # noqa: SLF001
    assert len(final) == 2 and all(LIVE_EVENT_SPAN <= e.end - e.start < LIVE_EVENT_SPAN + 8 for e in final)
    assert most <= LIVE_EVENT_SPAN + 8
    assert final[1].start > final[0].start and merger.close()[0].end == 2.5 * LIVE_EVENT_SPAN + 1
