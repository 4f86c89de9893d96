"""Errors a user can fix: reported as one line naming the input, never as a traceback."""

from __future__ import annotations


class InputError(Exception):
    """An input that cannot be read: missing, empty, not a video, no video stream..."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class AnalyzerError(Exception):
    """An analyzer the user asked for cannot run (model missing, out of memory...)."""


class OutputError(InputError):
    """An input's results cannot be written (its redacted video, log, manifest or state: a full disk...):
    that input ends failed, the others go on."""


class OutputFolderError(OutputError):
    """The output folder cannot take an input's results now (a full disk, a file it cannot write):
    the input is not at fault, and a later run tries it again."""


def check_range(name: str, value: float, low: float, high: float, *, above: bool = False, unit: str = "") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``low <= value <= high`` (``low < value`` with
    ``above``). NaN and infinities never pass: every bound is finite."""
    if not (low < value <= high if above else low <= value <= high):
        low_, high_ = (f"{b:g}" if isinstance(b, float) else str(b) for b in (low, high))
        span = f"above {low_}{unit} and at most {high_}{unit}" if above else f"within {low_}..{high_}{unit}"
        raise ValueError(f"{name} must be {span}, got {value}")
