"""``crunch logs DATASET [--follow]``: the workflow's log as stored with the dataset's files.

The log is read as ``crunch files`` and ``crunch download`` read storage (the transfer
engine: no link followed, no half-written upload read), so a reader sees what the
server's page shows. A running client writes its log locally and uploads it when its
stage ends (a failed Workflow, or Upload), so while a dataset runs the stored log is the
one last uploaded, if any; ``--follow`` polls until the dataset stops running.
"""

from __future__ import annotations

import datetime
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crunch.choices import DatasetState, Stage, State
from crunchclient import transfer
from crunchclient.server.connection import Connection
from crunchclient.server.wire import DatasetInfo
from crunchclient.settings.bootstrap import storage_location
from crunchclient.terminal.fetch import Source
from crunchclient.worker.records import RECORDS, WORKFLOW_LOG, record_path

LOG_NAME = record_path(WORKFLOW_LOG)
FOLLOW_EVERY = 5.0  # seconds between two looks at a running dataset and its stored log

Write = Callable[[str], None]


@dataclass
class StoredLog:
    """The stored log of one dataset as last read, and how much of it was printed."""

    storage: Any
    prefix: str
    """The dataset's folder in storage."""
    seen: tuple[int | None, int | None] | None = None
    """(size, mtime_ns) of the stored log last read: an unchanged one is not read again."""
    data: bytes = b""
    printed: int = 0
    """Bytes of data printed: up to the end of a line while following, else all."""

    @property
    def where(self) -> str:
        return f"{self.prefix}/{LOG_NAME!s} in {storage_location(self.storage)}"

    def read(self) -> bool:
        """Read the stored log again if it changed; whether there is one."""
        folder = f"{self.prefix}/{RECORDS}"
        with transfer.open_backend(self.storage, 1) as backend:
            entries = [entry for entry in backend.list(folder) if entry.rel == WORKFLOW_LOG]
            if not entries:
                self.seen, self.data, self.printed = None, b"", 0
                return False
            entry = entries[0]
            if (entry.size, entry.mtime_ns) == self.seen:
                return True
            with tempfile.TemporaryDirectory(prefix="crunch-logs-") as copy:
                transfer.download_tree(
                    backend, folder, Path(copy), only={WORKFLOW_LOG}, jobs=1, quiet=True
                )
                data = (Path(copy) / WORKFLOW_LOG).read_bytes()
        self.seen = (entry.size, entry.mtime_ns)
        if not data.startswith(self.data[: self.printed]):
            self.printed = 0  # a new run's log replaced it: print it from its start
        self.data = data
        return True

    def new_text(self, *, whole_lines: bool) -> str:
        """What was not printed yet: with whole_lines, up to the last line's end only."""
        end = len(self.data)
        if whole_lines:
            end = self.data.rfind(b"\n", self.printed) + 1 or self.printed
        text = self.data[self.printed : end].decode("utf-8", errors="replace")
        self.printed = max(end, self.printed)
        return text


def when(value: Any) -> str:
    """A server time (ISO 8601) as ``2026-05-01 12:00:00 UTC``; the text itself otherwise."""
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value) if value else "an unknown time"
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def running_since(connection: Connection, dataset: DatasetInfo) -> str:
    """'running on HOST since T': the host and time of the current run's Setup Start (the
    newest one in its status history), else the claim's holder."""
    start: dict[str, Any] | None = None
    for row in connection.statuses(dataset.slug):  # oldest first
        if row.get("stage") == Stage.SETUP and row.get("state") == State.START:
            start = row
    holder = dataset.claim_holder
    host = (start or {}).get("hostname") or holder.partition("@")[2].split(" ")[0] or "unknown"
    since = when(start["created"]) if start else "an unknown time"
    return f"running on {host} since {since}"


def show(
    connection: Connection, source: Source, slug: str, *, follow: bool = False,
    every: float = FOLLOW_EVERY, out: Write, note: Write,
) -> None:  # fmt: skip
    """Write the stored log to out (its text only) and what a reader needs to know about
    it to note (one line each): no log yet, a running dataset's log not uploaded yet."""
    dataset = connection.dataset(slug)
    log = StoredLog(source(dataset), dataset.folder)
    found = log.read()
    running = dataset.state == DatasetState.RUNNING
    if running:
        uploaded = "its stored log (uploaded before) follows" if found else "no log is stored yet"
        note(
            f"Dataset {slug!r} is {running_since(connection, dataset)}; its log is uploaded "
            f"when the stage ends ({uploaded})."
        )
    elif not found:
        note(f"Dataset {slug!r} ({dataset.state}) has no workflow log yet: {log.where}.")
        return
    out(log.new_text(whole_lines=follow and running))
    if not (follow and running):
        return
    while running:
        time.sleep(every)
        dataset = connection.dataset(slug)
        running = dataset.state == DatasetState.RUNNING
        log.read()
        out(log.new_text(whole_lines=running))
    note(f"Dataset {slug!r} is {dataset.state}: no longer running.")
