"""Models a command builds once and lends to its inputs, one input at a time.

Each input needs the redactor's detectors (with ``--blur``, or alone without a VLM) and the
gate's (with ``--gate detect``): ONNX sessions that take 0.12-0.24 s of CPU a set to build (1.6 s
the first, with the imports), and a fresh session's first 720p run takes about 0.1 s more. Built
anew for every input, as they were, a service working through short segments paid that for each
(twelve 5-s segments with ``--blur``: 0.4 CPU s a segment). The VLM is loaded once by the
command already; these now are too, the first time an input needs them. Inputs side by side
(``--jobs``) each borrow their own: PP-OCR's detector sets its input size on its rapidocr objects
for every call, and a gate holds its input's frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Lender(Generic[T]):
    """Hands out things that are costly to build, one borrower at a time, and keeps them for the
    next borrower: as many are built as were ever borrowed at once."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._idle: list[T] = []
        self._lock = threading.Lock()
        self.built = 0

    @contextmanager
    def lend(self) -> Iterator[T]:
        with self._lock:
            item = self._idle.pop() if self._idle else None
            if item is None:
                self.built += 1
        if item is None:
            item = self._build()  # (cheap: what it builds is built when first used)
        try:
            yield item
        finally:
            with self._lock:
                self._idle.append(item)
