"""What Qwen2-VL is asked: a system prompt with the categories and the answer format, then
one video message per window.

The text before the video never changes, so every window shares the same prompt prefix;
only the text after the video (the window's time span and frame times) is window-specific.
Qwen2-VL has no time encoding, so times are stated in words and the model answers with
frame numbers, which the parser turns back into presentation timestamps.
"""

from __future__ import annotations

from streampii.analyzers import CATEGORIES
from streampii.windows import Window

CATEGORY_HELP = {
    "face": "a human face, even partly visible, small or blurred",
    "license_plate": "a vehicle registration plate",
    "person_name": "a person's name: name badge, name tag, signature, caption, uniform patch",
    "id_document": "an identity document: passport, ID card, driving licence, staff or student card",
    "payment_card": "a bank, credit or debit card",
    "screen_content": "a phone, monitor or TV screen showing personal information",
    "contact_info": "a phone number or e-mail address",
    "address": "a street address: house number, street sign with number, letter or parcel label",
    "text": "other readable text that could identify a person, of unknown kind",
    "other": "any other personal data (say what it is in the description)",
}
assert set(CATEGORY_HELP) == set(CATEGORIES)

SYSTEM_PROMPT = (
    "You audit video for personal data (PII). You see a short window of frames from a video.\n"
    "Report every item of personal data that is visible, using exactly one of these categories:\n"
    + "".join(f"- {name}: {CATEGORY_HELP[name]}\n" for name in CATEGORIES)
    + "\nAnswer with JSON only, no prose and no code fences, in exactly this format:\n"
    '{"findings": [{"category": "license_plate", "first_frame": 1, "last_frame": 4, '
    '"description": "rear plate of a white car", "value": "AB-123-CD", "confidence": 0.9, '
    '"box": [412, 630, 498, 668]}]}\n'
    "Rules:\n"
    "- One finding per distinct item (each face, each plate, each badge); repeat the category as needed.\n"
    "- first_frame and last_frame are the frame numbers (1 = first frame of the window) where the item "
    "is first and last visible.\n"
    "- value is the legible text exactly as shown (plate number, name, phone number), or null if unreadable "
    "or not text.\n"
    "- confidence is between 0 and 1.\n"
    "- box is optional: [x1, y1, x2, y2] around the item in the frame first_frame, with coordinates "
    "normalised to 0..1000 (0,0 top left; 1000,1000 bottom right).\n"
    '- If no personal data is visible, answer {"findings": []}.'
)

INSTRUCTION = "Find all personal data in this video window."


def window_text(window: Window) -> str:
    """The window-specific text after the video: span and each frame's time (from PTS)."""
    frames = window.frames
    times = ", ".join(f"{i} at {f.t:.2f} s" for i, f in enumerate(frames, start=1))
    return (
        f"The window holds {len(frames)} frames from {window.start:.2f} s to {window.end:.2f} s "
        f"of the video. Frames: {times}. Answer with the JSON object only."
    )


def build_messages(window: Window) -> list[dict]:
    """Chat messages for one window; the video entry is filled by the processor's ``videos``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": INSTRUCTION},
                {"type": "video"},
                {"type": "text", "text": window_text(window)},
            ],
        },
    ]
