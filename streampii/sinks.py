"""Sinks: the event log (one JSON object per line) and the run manifest.

Each event is written and flushed the moment it is final, so a killed run loses at most
the window in flight. The manifest is rewritten atomically (temp file + rename), so a
reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path
from typing import IO, TypeVar

from streampii.events import Event

T = TypeVar("T")


class Latest(deque[T]):
    """The latest ``keep`` items appended (all of them with None), counting in ``omitted`` those
    pushed out: a camera's manifest lists its latest windows, outages and recordings, and says how
    many older ones there were, however long it runs."""

    def __init__(self, keep: int | None = None) -> None:
        super().__init__(maxlen=keep)
        self.omitted = 0

    def append(self, item: T) -> None:
        self.omitted += len(self) == self.maxlen
        super().append(item)


class EventLog:
    """Appends events to ``<stem>.events.jsonl``, one flushed line each."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, event: Event) -> dict:
        record = event.to_dict()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.count += 1
        return record

    def tell(self) -> int:
        return self._file.tell()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(path: Path, data: dict, indent: int | None = 2) -> None:
    """Replace ``path`` with ``data`` as JSON, never leaving a half-written file.

    ``indent=None`` is several times cheaper (Python's C encoder only serves unindented output):
    for files rewritten often during a run."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: no half-written file left beside the outputs
        raise


def event_schema() -> dict:
    return json.loads((Path(__file__).parent / "schemas" / "event.schema.json").read_text())
