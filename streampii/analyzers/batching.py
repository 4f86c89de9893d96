"""One model, several inputs: windows that concurrent pipelines submit share ``generate`` calls.

With ``streampii watch --jobs N`` each input runs in its own thread up to its next window and
hands the window to the ``SharedBatcher``. The batcher waits until every attached pipeline has
a window waiting, the batch is full, or ``max_wait`` has passed, then runs them in one call:
a GPU sees full batches even when each input alone yields a window only every few seconds.

The calls are made on the thread that calls ``serve`` (the CLI's main thread), always the same
one, for the whole run: torch.compile's CUDA graphs (``--kv-cache static``) keep per-thread
state and are not made for threads (pytorch issue 123177); a run with ``--jobs 8`` whose calls
ran on a thread of the batcher's own died with a segfault after that thread had ended (H200).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from streampii.analyzers import Analyzer, WindowResult
from streampii.windows import Window


@dataclass(eq=False)
class _Request:
    windows: list[Window]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[WindowResult] | None = None
    error: BaseException | None = None


class SharedBatcher:
    """An ``Analyzer`` that many threads may call at once; it batches their windows together."""

    def __init__(self, analyzer: Analyzer, batch_size: int, max_wait: float = 0.5) -> None:
        self.analyzer = analyzer
        self.name = analyzer.name
        self.batch_size = max(1, batch_size)
        self.max_wait = max_wait
        self.calls = 0  # model calls made, and windows sent: their ratio is the mean batch
        self.windows = 0
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._attached = 0
        self._closed = False

    def describe(self) -> dict:
        return {**self.analyzer.describe(), "shared_batch": self.batch_size}

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Count a pipeline as active while it runs: the batcher waits for the active ones."""
        with self._cond:
            self._attached += 1
        try:
            yield
        finally:
            with self._cond:
                self._attached -= 1
                self._cond.notify_all()

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        request = _Request(list(windows))
        if not request.windows:
            return []
        with self._cond:
            if self._closed:  # only after a second Ctrl-C: the pipeline ends before the window
                return _unanswered(request.windows, self.name)
            self._pending.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.results or []

    def close(self) -> None:
        """Let ``serve`` return once the windows already handed in are done; any thread may call it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def serve(self) -> None:
        """Make the model calls on this thread until ``close``.

        A KeyboardInterrupt (a second Ctrl-C) ends it: the windows in the call and those waiting
        go back unanswered ("interrupted"), so that every input's pipeline stops before them (a
        resumed run does them) and writes its manifest, instead of waiting for ever."""
        taken: list[_Request] | None = None
        try:
            while (taken := self._take()) is not None:
                self._call(taken)
        except BaseException:
            with self._cond:
                self._closed = True
                waiting, self._pending = self._pending, []
            for request in [*(taken or []), *waiting]:
                if not request.done.is_set():
                    request.results = _unanswered(request.windows, self.name)
                    request.done.set()
            raise

    def _take(self) -> list[_Request] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed)
            if not self._pending:
                return None
            deadline = time.monotonic() + self.max_wait
            while (
                sum(len(r.windows) for r in self._pending) < self.batch_size
                and len(self._pending) < self._attached
                and not self._closed
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken, size = [], 0
            while self._pending and (not taken or size + len(self._pending[0].windows) <= self.batch_size):
                request = self._pending.pop(0)
                taken.append(request)
                size += len(request.windows)
            return taken

    def _call(self, taken: list[_Request]) -> None:
        windows = [w for r in taken for w in r.windows]
        try:
            results = self.analyzer.analyze(windows)
        except Exception as exc:  # handed to the callers, whose pipelines report it
            for request in taken:
                request.error = exc
                request.done.set()
            return
        self.calls += 1
        self.windows += len(windows)
        by_window = {id(r.window): r for r in results}
        for request in taken:
            request.results = [by_window[id(w)] for w in request.windows if id(w) in by_window]
            request.done.set()


def _unanswered(windows: list[Window], analyzer: str) -> list[WindowResult]:
    return [
        WindowResult(w, [], analyzer, error="interrupted before the model answered", interrupted=True) for w in windows
    ]
