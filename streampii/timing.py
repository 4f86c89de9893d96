"""Seconds per stage, wall-clock and CPU, for the manifest and the benchmarks.

A stage's CPU time is the calling thread's own (``time.thread_time``). Process CPU time would
bill a stage for whatever other threads did meanwhile: FFmpeg's decoder threads and x264's
encoder threads run ahead on their own, so they would land in whichever stage happened to be
running. Those worker threads are counted apart (``ThreadGroup``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

_TASKS = Path("/proc/self/task")


class StageTimes:
    def __init__(self) -> None:
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()

    def stage(self, name: str) -> _Stage:
        """``with times.stage("decode"): ...`` adds the block's seconds to ``name``."""
        return _Stage(self, name)

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


class _Stage:
    """A plain context manager: several run per frame, so it stays cheaper than @contextmanager."""

    __slots__ = ("times", "name", "wall", "cpu")

    def __init__(self, times: StageTimes, name: str) -> None:
        self.times, self.name = times, name

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self.times.wall[self.name] += time.perf_counter() - self.wall
        self.times.cpu[self.name] += time.thread_time() - self.cpu


class ThreadGroup:
    """The native threads a library starts for us, found by name, to read their CPU time.

    Call ``start`` before the library starts its threads (opening a decoder) and ``collect``
    after (its first frame): threads named ``prefix...`` that appeared in between are the group.
    ``cpu`` reads them while they live; the last reading is kept once they exit. Linux only
    (``/proc``); elsewhere ``cpu`` is None.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._before: set[str] = set()
        self._seconds: dict[str, float] = {}

    def start(self) -> None:
        self._before = _thread_ids()

    def collect(self) -> None:
        for tid in _thread_ids() - self._before:
            if tid not in self._seconds and _thread_name(tid).startswith(self.prefix):
                self._seconds[tid] = 0.0

    def add(self, tid: int, seconds: float = 0.0) -> None:
        """Count a thread of ours in (its native id), whatever its name, with the CPU seconds it
        has used so far (it may exit before ``cpu`` is read)."""
        self._seconds[str(tid)] = max(seconds, self._seconds.get(str(tid), 0.0))

    def cpu(self) -> float | None:
        if not _TASKS.is_dir():
            return None
        for tid in self._seconds:
            seconds = _thread_cpu(tid)
            if seconds is not None:
                self._seconds[tid] = seconds
        return sum(self._seconds.values())


def _thread_ids() -> set[str]:
    try:
        return set(os.listdir(_TASKS))
    except OSError:
        return set()


def _thread_name(tid: str) -> str:
    try:
        return (_TASKS / tid / "comm").read_text().strip()
    except OSError:
        return ""


def _thread_cpu(tid: str) -> float | None:
    try:
        stat = (_TASKS / tid / "stat").read_text()
    except OSError:
        return None  # the thread has exited
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
