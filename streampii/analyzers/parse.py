"""Turn a Qwen2-VL answer into findings, tolerantly.

Models wrap JSON in code fences or prose, stop mid-answer at ``max_new_tokens``, use their
own grounding tokens (``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)
<|box_end|>``, coordinates 0..1000) and invent categories. All of that is accepted; what
cannot be read raises ``UnparseableAnswer`` so the caller marks the window failed and keeps
the raw text. Times always come from the frames' presentation timestamps: the model names
frame numbers, never seconds we would have to trust.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from streampii.analyzers import CATEGORIES, Finding, TimedBox
from streampii.sampler import Frame
from streampii.windows import Window


class UnparseableAnswer(ValueError):
    """The answer holds no JSON findings, no box tokens and no plain "nothing found"."""


@dataclass
class ParsedAnswer:
    findings: list[Finding]
    problems: list[str] = field(default_factory=list)  # parts that were skipped or repaired


_FENCE = re.compile(r"```[a-zA-Z]*")
_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_GROUNDING = re.compile(
    r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?"
    rf"<\|box_start\|>\s*\(?{_NUM},{_NUM}\)?\s*,\s*\(?{_NUM},{_NUM}\)?\s*<\|box_end\|>",
    re.S,
)
_SPECIAL = re.compile(r"<\|[a-z_]+\|>")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_NOTHING = re.compile(r"^\W*(none|nothing|no\b[^{}\[\]]{0,80}\b(pii|personal|visible|found|detected))", re.I)

# Labels models use for our categories; anything else becomes "other" with the raw label.
_SYNONYMS = {
    word: category
    for category, words in {
        "face": "faces person head human_face",
        "license_plate": "plate licence_plate number_plate car_plate vehicle_plate registration_plate",
        "person_name": "name name_badge name_tag badge signature",
        "id_document": "id id_card passport driver_license drivers_license driving_licence identity_document",
        "payment_card": "credit_card debit_card bank_card card",
        "screen_content": "screen monitor display phone_screen",
        "contact_info": "phone phone_number email e_mail email_address contact",
        "address": "street_address house_number postal_address",
        "text": "readable_text sign",
    }.items()
    for word in words.split()
}
_CONFIDENCE_WORDS = {"very high": 0.95, "high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3, "very low": 0.1}
_NO_VALUE = {"", "null", "none", "n/a", "na", "unknown", "unreadable", "illegible", "-"}


def parse_answer(text: str, window: Window, detector: str = "qwen2-vl") -> ParsedAnswer:
    """Findings in ``text`` for ``window``; raises ``UnparseableAnswer`` when there are none to read."""
    cleaned, grounded = _replace_grounding(_FENCE.sub("", text or ""))
    cleaned = _SPECIAL.sub("", cleaned)
    problems: list[str] = []
    items, span = _find_json(cleaned)
    if items is None:
        items, span = _salvage_objects(cleaned)
        if items is not None and '"findings"' in cleaned:
            problems.append(f"answer cut off: kept {len(items)} complete finding(s)")
    findings: list[Finding] = []
    for n, item in enumerate(items or []):
        finding = _to_finding(item, window, detector) if isinstance(item, dict) else None
        if finding is None:
            problems.append(f"finding {n + 1} skipped: {json.dumps(item)[:120]}")
        else:
            findings.append(finding)
    # grounding tokens outside the JSON: attach to a box-less finding with that label, else keep alone
    outside = [g for g in grounded if span is None or not span[0] <= g[0] < span[1]]
    for _, label, box in outside:
        target = _finding_for_label(findings, label)
        if target is None:
            findings.append(_from_grounding(label, box, window, detector))
        else:
            target.boxes.append(_timed_box(box, window.frames[0]))
    if items is None and not grounded:
        if _NOTHING.match(cleaned.strip()):
            return ParsedAnswer([], ["plain-text answer read as no findings"])
        raise UnparseableAnswer("no JSON findings in the answer")
    if items and not findings and not outside:
        raise UnparseableAnswer("; ".join(problems) or "no usable finding in the answer")
    return ParsedAnswer(findings, problems)


def normalize_category(raw: str) -> tuple[str, str | None]:
    """(category, label): unknown labels become ``other`` and keep the raw label."""
    key = re.sub(r"[^a-z0-9]+", "_", str(raw).strip().lower()).strip("_")
    if key in CATEGORIES:
        return key, None
    if key in _SYNONYMS:
        return _SYNONYMS[key], None
    return "other", str(raw).strip() or None


def _replace_grounding(text: str) -> tuple[str, list[tuple[int, str, tuple[float, ...]]]]:
    """Replace each grounding group with ``[x1, y1, x2, y2]`` (its label goes with the box, not into
    the text) and return (text, [(position in new text, label, box)]). Boxes that
    follow a labelled one directly share its label: Qwen2-VL names several objects once
    (``<|object_ref_start|>faces<|object_ref_end|><|box_start|>...<|box_end|><|box_start|>...``)."""
    out: list[str] = []
    found: list[tuple[int, str, tuple[float, ...]]] = []
    pos = length = 0
    label = ""
    for match in _GROUNDING.finditer(text):
        out.append(text[pos : match.start()])
        if match.group("label") is not None:
            label = match.group("label").strip()
        elif text[pos : match.start()].strip(" \t\r\n,;"):
            label = ""  # a box of its own, not one more of the label before it
        length += match.start() - pos
        box = tuple(float(match.group(i)) for i in range(2, 6))
        replacement = "[" + ", ".join(f"{v:g}" for v in box) + "]"
        found.append((length, label, box))
        out.append(replacement)
        length += len(replacement)
        pos = match.end()
    out.append(text[pos:])
    return "".join(out), found


def _find_json(text: str) -> tuple[list | None, tuple[int, int] | None]:
    """The first JSON container of findings (``{"findings": [...]}`` or a list), and its span."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"[{\[]", text)):
        for repaired in (False, True):
            candidate = _TRAILING_COMMA.sub(r"\1", text[start:]) if repaired else text[start:]
            try:
                value, end = decoder.raw_decode(candidate)
            except ValueError:
                continue
            items = _items(value)
            if items is not None:
                return items, (start, len(text) if repaired else start + end)
            break
    return None, None


def _items(value) -> list | None:
    if isinstance(value, dict):
        for key in ("findings", "items", "results", "pii"):
            if isinstance(value.get(key), list):
                return value[key]
        return None
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return None


def _salvage_objects(text: str) -> tuple[list | None, tuple[int, int] | None]:
    """Complete finding objects anywhere in the text: a bare finding, several in prose, or the
    ones before the cut in an answer that stopped at ``max_new_tokens``."""
    decoder = json.JSONDecoder()
    items: list = []
    first: int | None = None
    pos = 0
    while (brace := text.find("{", pos)) >= 0:
        try:
            value, end = decoder.raw_decode(text, brace)
        except ValueError:
            pos = brace + 1
            continue
        if isinstance(value, dict) and any(k in value for k in ("category", "type", "label")):
            items.append(value)
            first = brace if first is None else first
            pos = end
        else:
            pos = brace + 1
    return (items, (first, pos)) if items else (None, None)


def _to_finding(item: dict, window: Window, detector: str) -> Finding | None:
    raw = item.get("category") or item.get("type") or item.get("label")
    if not raw or not isinstance(raw, str):
        return None
    category, label = normalize_category(raw)
    frames = window.frames
    first = _frame_index(item, ("first_frame", "start_frame", "frame"), ("start", "first_time", "start_time"), window)
    last = _frame_index(item, ("last_frame", "end_frame", "frame"), ("end", "last_time", "end_time"), window)
    first = 0 if first is None else first
    last = len(frames) - 1 if last is None else last
    first, last = min(first, last), max(first, last)
    return Finding(
        category=category,
        start=frames[first].t,
        end=frames[last].t,
        value=_value(item.get("value", item.get("text"))),
        confidence=_confidence(item.get("confidence", item.get("score"))),
        description=str(item["description"]).strip() or None if item.get("description") else None,
        label=label,
        boxes=_boxes(item, window, frames[first]),
        detector=detector,
    )


def _frame_index(item: dict, frame_keys: tuple, time_keys: tuple, window: Window) -> int | None:
    """0-based index into the window from a 1-based frame number, or from a time (nearest frame)."""
    n = len(window.frames)
    for key in frame_keys:
        number = _number(item.get(key))
        if number is not None:
            return min(max(int(round(number)) - 1, 0), n - 1)
    for key in time_keys:
        t = _number(item.get(key))
        if t is not None:
            return min(range(n), key=lambda i: abs(window.frames[i].t - t))
    return None


def _number(value) -> float | None:
    """A finite number, or None: Python's JSON reads NaN, Infinity and integers too large for a float."""
    if isinstance(value, bool) or value is None:
        return None
    if not isinstance(value, int | float):
        match = re.search(r"-?\d+(?:\.\d+)?", str(value))
        if match is None:
            return None
        value = match.group()
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _value(value) -> str | None:
    if value is None or isinstance(value, bool | dict | list):  # (true / false: no legible text)
        return None
    text = str(value).strip()
    return None if text.lower() in _NO_VALUE else text


def _confidence(value) -> float | None:
    if isinstance(value, str) and value.strip().lower() in _CONFIDENCE_WORDS:
        return _CONFIDENCE_WORDS[value.strip().lower()]
    number = _number(value)
    if number is None:
        return None
    if number > 1:
        number /= 100  # percentages
    return min(max(number, 0.0), 1.0)


def _boxes(item: dict, window: Window, first: Frame) -> list[TimedBox]:
    boxes: list[TimedBox] = []
    for key in ("box", "bbox", "bbox_2d", "boxes"):
        value = item.get(key)
        if value is None:
            continue
        entries = value if key == "boxes" and isinstance(value, list) else [value]
        for entry in entries:
            frame = first
            if isinstance(entry, dict):  # {"frame": 3, "box": [...]}
                index = _frame_index(entry, ("frame",), ("t", "time"), window)
                frame = window.frames[index] if index is not None else first
                entry = entry.get("box", entry.get("bbox"))
            coords = _coords(entry)
            if coords is not None:
                boxes.append(_timed_box(coords, frame))
        break
    return boxes


def _coords(value) -> tuple[float, float, float, float] | None:
    """Four numbers from [x1,y1,x2,y2], [[x1,y1],[x2,y2]] or "(x1,y1),(x2,y2)"."""
    if isinstance(value, list | tuple):
        flat = [v for part in value for v in (part if isinstance(part, list | tuple) else [part])]
    else:
        flat = re.findall(r"-?\d+(?:\.\d+)?", str(value))
    try:
        numbers = [float(v) for v in flat]
    except (TypeError, ValueError, OverflowError):
        return None
    return tuple(numbers) if len(numbers) == 4 and all(map(math.isfinite, numbers)) else None


def _timed_box(coords: tuple[float, ...], frame: Frame) -> TimedBox:
    """0..1000 Qwen2-VL coordinates to pixels of the original (upright) frame."""
    width, height = frame.source_size
    x1, y1, x2, y2 = (min(max(v, 0.0), 1000.0) / 1000.0 for v in coords)
    x1, x2 = sorted((x1 * width, x2 * width))
    y1, y2 = sorted((y1 * height, y2 * height))
    return TimedBox(frame.t, (x1, y1, x2, y2))


def _finding_for_label(findings: list[Finding], label: str) -> Finding | None:
    category, _ = normalize_category(label)
    for finding in findings:
        if finding.boxes:
            continue
        texts = [finding.label, finding.value, finding.description]
        if (category != "other" and finding.category == category) or any(
            t and label and label.lower() in t.lower() for t in texts
        ):
            return finding
    return None


def _from_grounding(label: str, box: tuple[float, ...], window: Window, detector: str) -> Finding:
    category, raw = normalize_category(label or "other")
    return Finding(
        category=category,
        start=window.start,
        end=window.end,
        label=raw,
        description=label or None,
        boxes=[_timed_box(box, window.frames[0])],
        detector=detector,
    )
