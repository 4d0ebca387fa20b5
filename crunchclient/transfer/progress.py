"""Progress of a transfer: a bar on a terminal, periodic lines in a batch log."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

from crunchclient.exceptions import TransferError
from crunchclient.printable import printable

PLAIN_INTERVAL = 10.0  # seconds between plain lines: readable in a Slurm log


class TransferCancelled(TransferError):
    """The transfer was stopped before it finished."""


def size_text(size: int) -> str:
    """A size as a person reads it: bytes exactly, then KiB, MiB... with one decimal."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Count bytes and files from many threads, and show them on stderr.

    A rich bar (bytes, files, rate, ETA) when stderr is a terminal, a plain line every
    PLAIN_INTERVAL seconds otherwise (and one at the end, once there were such lines: a
    short transfer's line would only repeat the caller's, e.g. a run's Setup line),
    nothing when quiet.
    """

    def __init__(
        self,
        label: str,
        *,
        total_bytes: int,
        total_files: int,
        quiet: bool = False,
        stream: IO[str] | None = None,
        interval: float = PLAIN_INTERVAL,
    ) -> None:
        self.label = printable(label, lines=False)  # printed to stderr, not by a command
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.bytes = 0
        self.files = 0
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet or total_files == 0
        self.interval = interval
        self.cancelled = False
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_line = self._started
        self._lines = 0  # plain lines printed
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        self._started = self._last_line = time.monotonic()
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.markup import escape
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                escape(self.label), total=self.total_bytes, files=0, total_files=self.total_files
            )
        return self

    def cancel(self) -> None:
        """Make every worker stop at its next chunk (Ctrl+C, or another file failed)."""
        self.cancelled = True

    def check(self) -> None:
        """Raise TransferCancelled if the transfer was cancelled."""
        if self.cancelled:
            raise TransferCancelled

    def advance(self, *, bytes: int = 0, files: int = 0) -> None:
        """Count bytes and finished files; cheap enough to call for every chunk."""
        if self.cancelled:
            raise TransferCancelled
        if self.quiet:
            return
        with self._lock:
            self.bytes += bytes
            self.files += files
            if self._bar is not None:
                self._bar.update(self._task, completed=self.bytes, files=self.files)
                return
            now = time.monotonic()
            if now - self._last_line < self.interval:
                return
            self._last_line = now
        self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self.bytes / elapsed
        remaining = (self.total_bytes - self.bytes) / rate if rate > 0 else float("inf")
        eta = f"{remaining:.0f}s" if remaining != float("inf") else "?"
        percent = 100.0 * self.bytes / self.total_bytes if self.total_bytes else 100.0
        self._lines += 1
        print(
            f"{self.label}: {_size(self.bytes)}/{_size(self.total_bytes)} ({percent:.0f}%), "
            f"{self.files}/{self.total_files} files, {_size(rate)}/s, ETA {eta}",
            file=self.stream,
            flush=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet and exc_type is None and self._lines:
            self._line(time.monotonic())
