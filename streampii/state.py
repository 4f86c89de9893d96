"""Resumable state: one SQLite file in the output folder says how far each input got.

After every window the pipeline records, in one transaction: the last window whose events
are all final and written, the byte length of the event log at that point, and the event
merger's still-open events. A run killed at any moment (SIGKILL included) and started
again truncates the log to the recorded length, restores the open events, skips the
windows already done and continues: the final log is byte-identical to an uninterrupted
run's, with no event lost or written twice. The order that makes this hold is: write and
fsync the events, then commit the checkpoint (a checkpoint never points past the log).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from streampii.analyzers import TimedBox
from streampii.events import Event, EventMerger
from streampii.source import redact_url

STATE_FILE = "streampii-state.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    key TEXT PRIMARY KEY,          -- redacted source + output stem: never a password
    fingerprint TEXT NOT NULL,     -- file size/mtime + settings: a change means start over
    status TEXT NOT NULL,          -- running | complete | truncated | interrupted | failed
    window INTEGER NOT NULL,       -- last window whose events are final and written; -1 = none
    t REAL,                        -- end time (s) of that window
    log_offset INTEGER NOT NULL,   -- byte length of the event log after that window
    open_events TEXT NOT NULL,     -- the merger's open events, JSON
    data TEXT NOT NULL,            -- free-form JSON (counters, segment facts...)
    updated REAL NOT NULL
)
"""


@dataclass
class Checkpoint:
    key: str
    fingerprint: str
    status: str
    window: int
    t: float | None
    log_offset: int
    open_events: list[dict]
    data: dict

    @property
    def finished(self) -> bool:
        return self.status != "running"


def input_key(source: str, stem: str) -> str:
    """The row of one input: its output stem and its source (``source_key``)."""
    return f"{stem}|{source_key(source)}"


def source_key(source: str) -> str:
    """A source as the state knows it: a URL with its credentials hidden, a file by its resolved
    path, so that cron's absolute path and a person's relative one are the same input."""
    return redact_url(source) if "://" in source else str(Path(source).resolve())


def fingerprint(source: str, settings: dict) -> str:
    """What must not change for a resume to be valid: the file itself and the settings."""
    parts: dict = {"settings": settings}
    path = Path(source)
    if "://" not in source and path.is_file():
        stat = path.stat()
        parts["file"] = [stat.st_size, stat.st_mtime_ns]
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class RunState:
    """The state database of one output folder. Safe to share between processes (SQLite locks)."""

    def __init__(self, out_dir: Path, name: str = STATE_FILE) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / name
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # switching a new file to WAL needs a moment alone with it, which the busy timeout does
        # not wait for: retry while another process or thread opens the same folder's state
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # NORMAL in WAL mode: a commit survives a killed process; after power loss the latest
        # checkpoint may roll back, which is safe (it resumes from an earlier window)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> Checkpoint | None:
        row = self._db.execute(
            "SELECT key, fingerprint, status, window, t, log_offset, open_events, data FROM inputs WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return Checkpoint(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), json.loads(row[7]))

    def begin(self, key: str, fingerprint: str) -> Checkpoint | None:
        """Mark ``key`` running; return the checkpoint to resume from, or None to start fresh
        (never seen, or the input or settings changed since)."""
        previous = self.get(key)
        if previous is not None and previous.fingerprint == fingerprint:
            if previous.status != "running":
                # finished before: a rerun reprocesses it (callers skip finished inputs themselves)
                previous = None
            else:
                return previous
        self._write(key, fingerprint, "running", -1, None, 0, [], {})
        return None

    def checkpoint(
        self, key: str, window: int, t: float | None, log_offset: int, open_events: list[dict], data: dict | None = None
    ) -> None:
        self._db.execute(
            "UPDATE inputs SET window = ?, t = ?, log_offset = ?, open_events = ?, data = ?, updated = ? WHERE key = ?",
            (window, t, log_offset, json.dumps(open_events), json.dumps(data or {}), time.time(), key),
        )

    def finish(self, key: str, status: str, log_offset: int, data: dict | None = None) -> None:
        self._db.execute(
            "UPDATE inputs SET status = ?, log_offset = ?, open_events = '[]', data = ?, updated = ? WHERE key = ?",
            (status, log_offset, json.dumps(data or {}), time.time(), key),
        )

    def mark(self, key: str, status: str, reason: str | None = None, fingerprint: str = "") -> None:
        """Record an input that could not be processed at all (e.g. unreadable segment);
        ``fingerprint``: of the file as it failed, to tell later whether it changed since."""
        self._write(key, fingerprint, status, -1, None, 0, [], {"error": reason} if reason else {})

    def drop_checkpoint(self, key: str) -> None:
        """Make a killed run's checkpoint of ``key`` unusable: a run that ignores the state
        (``--no-resume``) rewrites the event log it points into, which a later resume would cut
        back to it and continue. The row stays (its output stem is kept); the next run starts over."""
        self._db.execute("UPDATE inputs SET fingerprint = '' WHERE key = ? AND status = 'running'", (key,))

    def status(self, key: str) -> str | None:
        row = self._db.execute("SELECT status FROM inputs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def stem_of(self, source: str) -> str | None:
        """The output stem ``source`` is recorded under, if it is recorded. A file that earlier
        versions recorded under its path as typed (relative to this folder) is taken over."""
        tail = "|" + source_key(source)
        row = self._db.execute("SELECT key FROM inputs WHERE substr(key, -?) = ?", (len(tail), tail)).fetchone()
        if row:
            return row[0][: -len(tail)]
        if "://" in source:
            return None
        for (key,) in self._db.execute("SELECT key FROM inputs").fetchall():
            stem, _, typed = key.partition("|")
            if "://" not in typed and not Path(typed).is_absolute() and source_key(typed) == tail[1:]:
                self.rename(key, stem + tail)
                return stem
        return None

    def stem_taken(self, stem: str, source: str) -> bool:
        """True when an input other than ``source`` is recorded under the output stem ``stem``."""
        row = self._db.execute(
            "SELECT 1 FROM inputs WHERE substr(key, 1, ?) = ? AND key != ? LIMIT 1",
            (len(stem) + 1, stem + "|", input_key(source, stem)),
        ).fetchone()
        return row is not None

    def keys_of_file(self, name: str) -> list[str]:
        """The keys of every input whose source ends in the file name ``name``, in any folder."""
        tails = ("/" + name, "|" + name)
        rows = self._db.execute("SELECT key FROM inputs WHERE substr(key, -?) IN (?, ?)", (len(tails[0]), *tails))
        return [row[0] for row in rows]

    def rename(self, key: str, new_key: str) -> None:
        """Record an input under another key, with all it had (status, checkpoint, fingerprint)."""
        self._db.execute("UPDATE inputs SET key = ? WHERE key = ?", (new_key, key))

    def finished_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM inputs WHERE status != 'running'")}

    def forget(self, key: str) -> None:
        self._db.execute("DELETE FROM inputs WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()

    def _write(self, key, fingerprint, status, window, t, log_offset, open_events, data) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO inputs (key, fingerprint, status, window, t, log_offset, open_events, data, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, fingerprint, status, window, t, log_offset, json.dumps(open_events), json.dumps(data), time.time()),
        )

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rewind_log(path: Path, checkpoint: Checkpoint | None) -> bool:
    """Cut the event log back to the checkpoint; True when the caller should append to it.

    Events written after the last checkpoint are dropped: they are written again, identically,
    when their window is redone. A log shorter than the checkpoint (lost on power failure, or
    deleted) cannot be resumed: False, start over.
    """
    if checkpoint is None or not path.exists() or path.stat().st_size < checkpoint.log_offset:
        return False
    with open(path, "r+b") as f:
        f.truncate(checkpoint.log_offset)
        f.flush()
        os.fsync(f.fileno())
    return True


def event_to_state(event: Event) -> dict:
    """Every field of an open event, losslessly (``Event.to_dict`` rounds and formats).
    Generic over the dataclass fields, so a field added to ``Event`` is kept too."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    data["boxes"] = [[b.t, list(b.box)] for b in event.boxes]
    return data


def event_from_state(data: dict) -> Event:
    fields = dict(data)
    fields["boxes"] = [TimedBox(t, tuple(box)) for t, box in data.get("boxes", [])]
    return Event(**fields)


def merger_snapshot(merger: EventMerger) -> list[dict]:
    return [event_to_state(e) for e in merger._open]  # noqa: SLF001 - the merger's only state


def merger_restore(merger: EventMerger, snapshot: list[dict]) -> None:
    merger._open = [event_from_state(d) for d in snapshot]  # noqa: SLF001


class Resume:
    """Glue for one input: what the pipeline calls around its window loop.

    resume = Resume(state, key, fingerprint(source, settings), events_path)
    append = resume.start(merger)          # truncates the log, restores open events
    for window in windows:
        if resume.done(window.index): continue   # its events are already in the log
        ... analyse, merger.add, log.write ...
        resume.window_done(window, log, merger)
    resume.finish(status, log)
    """

    def __init__(self, state: RunState, key: str, fp: str, log_path: Path) -> None:
        self.state = state
        self.key = key
        self.fingerprint = fp
        self.log_path = log_path
        self.checkpoint: Checkpoint | None = None
        self.skip_through = -1  # windows up to this index are done

    def start(self, merger: EventMerger, live: bool = False) -> bool:
        """Return True when the event log is to be appended to (resuming), False to rewrite it.

        ``live``: a camera has no windows to skip (its time starts again at 0), and its log
        is always appended to; open events of a killed run are restored so that the caller
        can close them.
        """
        self.checkpoint = self.state.begin(self.key, self.fingerprint)
        if not rewind_log(self.log_path, self.checkpoint):
            if self.checkpoint is not None:  # the log lost what the state promised: start over
                self.state.forget(self.key)
                self.state.begin(self.key, self.fingerprint)
                self.checkpoint = None
            return live and self.log_path.exists()
        merger_restore(merger, self.checkpoint.open_events)
        self.skip_through = -1 if live else self.checkpoint.window
        return True

    @property
    def data(self) -> dict:
        return self.checkpoint.data if self.checkpoint else {}

    def done(self, window_index: int) -> bool:
        return window_index <= self.skip_through

    def window_done(
        self, window_index: int, t: float | None, log, merger: EventMerger, data: dict | None = None, sync: bool = True
    ) -> None:
        """Call after the window's final events are written: log first (fsync), then state."""
        if sync:
            log.sync()
        self.state.checkpoint(self.key, window_index, t, log.tell(), merger_snapshot(merger), data)

    def finish(self, status: str, log, data: dict | None = None) -> None:
        log.sync()
        self.state.finish(self.key, status, log.tell(), data)
