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
    """An input's redacted video cannot be written: that input ends failed, the others go on."""
