"""Parsing answers written the way Qwen2-VL writes them, good and bad."""

from __future__ import annotations

import pytest
from qwen_helpers import make_window

from streampii.analyzers.parse import UnparseableAnswer, normalize_category, parse_answer

TIMES = [20.0, 20.52, 21.04, 21.48, 22.0, 22.56, 23.0, 23.52]  # uneven: times must come from PTS


@pytest.fixture
def window():
    return make_window(TIMES, index=3, first=40)


def test_clean_json_frames_become_pts_times(window):
    answer = (
        '{"findings": [{"category": "license_plate", "first_frame": 2, "last_frame": 5, '
        '"description": "plate of a red van", "value": "KA 01 AB 1234", "confidence": 0.85}]}'
    )
    parsed = parse_answer(answer, window)
    assert parsed.problems == []
    (f,) = parsed.findings
    assert (f.category, f.start, f.end, f.value, f.confidence) == ("license_plate", 20.52, 22.0, "KA 01 AB 1234", 0.85)
    assert f.description == "plate of a red van" and f.detector == "qwen2-vl" and f.boxes == []


def test_code_fence_and_prose_around_json(window):
    answer = (
        'Sure! Here is what I found:\n```json\n{"findings": [{"category": "face", "first_frame": 1, '
        '"last_frame": 8, "confidence": 0.7}]}\n```\nLet me know if you need more.'
    )
    (f,) = parse_answer(answer, window).findings
    assert (f.category, f.start, f.end, f.value) == ("face", 20.0, 23.52, None)


def test_box_0_1000_becomes_original_frame_pixels(window):
    answer = '{"findings": [{"category": "face", "first_frame": 3, "last_frame": 4, "box": [500, 500, 750, 1000]}]}'
    (f,) = parse_answer(answer, window).findings
    assert len(f.boxes) == 1
    assert f.boxes[0].t == 21.04  # the box belongs to first_frame
    assert f.boxes[0].box == pytest.approx((960.0, 540.0, 1440.0, 1080.0))


def test_box_out_of_range_swapped_corners_and_pair_format(window):
    answer = '[{"category": "face", "bbox": [[750, 1200], [500, -20]]}]'
    (f,) = parse_answer(answer, window).findings
    assert f.boxes[0].box == pytest.approx((960.0, 0.0, 1440.0, 1080.0))


def test_qwen_box_tokens_inside_json(window):
    answer = (
        '{"findings": [{"category": "license_plate", "first_frame": 1, "last_frame": 2, "value": "AB123", '
        '"box": <|box_start|>(100,200),(300,400)<|box_end|>}]}'
    )
    (f,) = parse_answer(answer, window).findings
    assert f.value == "AB123"
    assert f.boxes[0].box == pytest.approx((192.0, 216.0, 576.0, 432.0))


def test_grounding_tokens_only_answer(window):
    answer = (
        "<|object_ref_start|>license plate<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|> and "
        "<|object_ref_start|>a tattoo<|object_ref_end|><|box_start|>(500,500),(600,600)<|box_end|>"
    )
    plate, tattoo = parse_answer(answer, window).findings
    assert plate.category == "license_plate" and (plate.start, plate.end) == (20.0, 23.52)
    assert plate.boxes[0].box == pytest.approx((19.2, 21.6, 57.6, 43.2))
    assert (tattoo.category, tattoo.label) == ("other", "a tattoo")


def test_boxes_after_one_label_share_it(window):
    # Qwen2-VL names several objects once and lists a box for each; they were "other" with no label
    answer = (
        "<|object_ref_start|>faces<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>"
        "<|box_start|>(500,500),(600,600)<|box_end|>, <|box_start|>(700,700),(800,800)<|box_end|>"
        " and a box of its own: <|box_start|>(0,0),(100,100)<|box_end|>"
    )
    findings = parse_answer(answer, window).findings
    assert [f.category for f in findings] == ["face", "face", "face", "other"]
    assert [len(f.boxes) for f in findings] == [1, 1, 1, 1]


def test_grounding_tokens_after_json_attach_to_their_finding(window):
    answer = (
        '{"findings": [{"category": "person_name", "value": "Maria Lopez", "first_frame": 2}]}\n'
        "The badge is at <|object_ref_start|>name badge<|object_ref_end|><|box_start|>(0,0),(100,100)<|box_end|>"
    )
    (f,) = parse_answer(answer, window).findings
    assert f.category == "person_name" and len(f.boxes) == 1


def test_per_frame_boxes(window):
    answer = (
        '{"findings": [{"category": "face", "first_frame": 1, "last_frame": 3, '
        '"boxes": [{"frame": 1, "box": [0, 0, 100, 100]}, {"frame": 3, "box": [10, 0, 110, 100]}]}]}'
    )
    (f,) = parse_answer(answer, window).findings
    assert [b.t for b in f.boxes] == [20.0, 21.04]


def test_unknown_category_kept_as_other_with_raw_label(window):
    answer = '{"findings": [{"category": "Vehicle VIN", "value": "1HGCM82633A004352"}]}'
    (f,) = parse_answer(answer, window).findings
    assert (f.category, f.label, f.value) == ("other", "Vehicle VIN", "1HGCM82633A004352")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Licence Plate", ("license_plate", None)),
        ("license-plate", ("license_plate", None)),
        ("E-mail", ("contact_info", None)),
        ("credit card", ("payment_card", None)),
        ("SCREEN_CONTENT", ("screen_content", None)),
        ("barcode", ("other", "barcode")),
    ],
)
def test_category_names(raw, expected):
    assert normalize_category(raw) == expected


def test_frames_clamped_swapped_and_times_mapped_to_nearest_frame(window):
    answer = (
        '{"findings": [{"category": "face", "first_frame": 12, "last_frame": 0}, '
        '{"category": "address", "start": 21.1, "end": 23.3, "value": "12 Elm Street"}, '
        '{"category": "text", "first_frame": "frame 3"}]}'
    )
    face, address, text = parse_answer(answer, window).findings
    assert (face.start, face.end) == (20.0, 23.52)
    assert (address.start, address.end) == (21.04, 23.52)
    assert (text.start, text.end) == (21.04, 23.52)  # no last frame: to the end of the window


def test_confidence_and_empty_values(window):
    answer = (
        '{"findings": [{"category": "face", "confidence": 85, "value": "N/A"}, '
        '{"category": "face", "confidence": "high", "value": null}, {"category": "face", "confidence": "sure"}]}'
    )
    a, b, c = parse_answer(answer, window).findings
    assert (a.confidence, a.value) == (0.85, None)
    assert (b.confidence, b.value) == (0.9, None)
    assert c.confidence is None


def test_trailing_commas_are_repaired(window):
    answer = '{"findings": [{"category": "face", "first_frame": 1,},],}'
    assert [f.category for f in parse_answer(answer, window).findings] == ["face"]


def test_truncated_answer_keeps_complete_findings_and_says_so(window):
    answer = (
        '{"findings": [{"category": "face", "first_frame": 1, "last_frame": 2}, '
        '{"category": "license_plate", "first_frame": 3, "value": "AB'
    )
    parsed = parse_answer(answer, window)
    assert [f.category for f in parsed.findings] == ["face"]
    assert "cut off" in parsed.problems[0]


def test_bad_entries_are_skipped_with_a_problem(window):
    parsed = parse_answer('{"findings": [{"category": "face"}, "a face", {"description": "no category"}]}', window)
    assert [f.category for f in parsed.findings] == ["face"]
    assert len(parsed.problems) == 2


@pytest.mark.parametrize("answer", ['{"findings": []}', "```json\n[]\n```", "No personal data is visible."])
def test_nothing_found(window, answer):
    assert parse_answer(answer, window).findings == []


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "datfin\x1ado Lc wention cateYZ",
        "I see a man walking a dog in a park.",
        '{"answer": "a person"}',
        '{"findings": [{"description": "no category"}]}',
    ],
)
def test_unparseable_answers_raise(window, answer):
    with pytest.raises(UnparseableAnswer):
        parse_answer(answer, window)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1" + "0" * 400])
def test_nan_infinity_and_huge_numbers_are_ignored(window, number):
    # Python's JSON reads NaN, Infinity and huge integers: they crashed the parser (and so every
    # window of the call) or reached the log as NaN
    answer = (
        f'{{"findings": [{{"category": "face", "first_frame": {number}, "last_frame": 2, "start": {number}, '
        f'"confidence": {number}, "box": [{number}, 0, 500, 500]}}]}}'
    )
    (f,) = parse_answer(answer, window).findings
    assert (f.start, f.end, f.confidence, f.boxes) == (20.0, 20.52, None, [])


def test_a_boolean_value_is_no_value(window):
    # ("value": true reached the log as the text "True")
    answer = '{"findings": [{"category": "license_plate", "first_frame": 0, "last_frame": 1, "value": true}]}'
    (f,) = parse_answer(answer, window).findings
    assert f.value is None
