"""The prompt: categories and answer format fixed before the video, window times after it."""

from __future__ import annotations

import json
import re

from qwen_helpers import make_window

from streampii.analyzers import CATEGORIES
from streampii.analyzers.parse import parse_answer
from streampii.analyzers.prompt import INSTRUCTION, SYSTEM_PROMPT, build_messages, window_text


def test_system_prompt_defines_every_category_and_the_box_format():
    for category in CATEGORIES:
        assert f"- {category}:" in SYSTEM_PROMPT
    assert "0..1000" in SYSTEM_PROMPT
    for key in ("category", "first_frame", "last_frame", "description", "value", "confidence", "box"):
        assert f'"{key}"' in SYSTEM_PROMPT


def test_example_in_the_system_prompt_is_an_answer_the_parser_reads():
    example = re.search(r'^\{"findings".*\}$', SYSTEM_PROMPT, re.M).group()
    json.loads(example)
    window = make_window([10.0, 10.5, 11.0, 11.5])
    finding = parse_answer(example, window).findings[0]
    assert (finding.category, finding.value, finding.start, finding.end) == ("license_plate", "AB-123-CD", 10.0, 11.5)


def test_window_text_states_span_and_each_frame_time_from_pts():
    window = make_window([12.0, 12.96, 14.04, 15.0])
    text = window_text(window)
    assert "4 frames from 12.00 s to 15.00 s" in text
    assert "1 at 12.00 s, 2 at 12.96 s, 3 at 14.04 s, 4 at 15.00 s" in text


def test_fixed_text_before_the_video_and_window_text_after_it():
    a = build_messages(make_window([0.0, 1.0]))
    b = build_messages(make_window([30.0, 31.0, 32.0, 33.0], index=5))
    assert a[0] == b[0] == {"role": "system", "content": SYSTEM_PROMPT}
    kinds = [part["type"] for part in a[1]["content"]]
    assert kinds == ["text", "video", "text"]
    assert a[1]["content"][0] == b[1]["content"][0] == {"type": "text", "text": INSTRUCTION}
    assert a[1]["content"][2] != b[1]["content"][2]
    assert "30.00 s" in b[1]["content"][2]["text"]
