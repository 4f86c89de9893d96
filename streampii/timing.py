"""Seconds per stage, wall-clock and CPU, for the manifest and the benchmarks.

CPU time is the whole process's (``time.process_time``): it includes the decoder's and
onnxruntime's worker threads while a stage runs, which is what a stage costs the machine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class StageTimes:
    def __init__(self) -> None:
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - wall
            self.cpu[name] += time.process_time() - cpu

    def wrap(self, name: str, items: Iterable) -> Iterator:
        """Yield from ``items``, counting the time spent producing each item (generators of
        earlier stages included: the caller subtracts what it measures separately)."""
        iterator = iter(items)
        while True:
            with self.stage(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item
