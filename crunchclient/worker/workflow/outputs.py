"""MD5s of the workflow's files, computed while the workflow runs.

Upload records the MD5 of every new or changed file, and MD5 runs at a fifth of the
speed of a kernel copy on one core. A workflow writes most of its files well before it
ends, so each file is hashed here once it has settled, at the lowest CPU priority, and
Upload then only copies it. A digest counts only while the file's size, mtime, ctime
and inode are still those it was hashed with; any other file Upload hashes itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from pathlib import Path

from crunchclient.exceptions import Interrupted
from crunchclient.transfer import walk_files
from crunchclient.transfer.hashing import (
    Digests,
    Fingerprint,
    Stopper,
    fingerprint,
    lowest_priority,
    md5_file,
)

logger = logging.getLogger(__name__)

SETTLE = 1.0  # seconds a file must stay unchanged before it is hashed
SCAN_SHARE = 0.05  # at most this share of the watching thread's time goes to scanning


class Watchers:
    """The threads that watch, started on first use and kept: one serves dataset after
    dataset of a loop (more only for workers that run at once in one process).

    Not a ThreadPoolExecutor: its thread counts itself idle only after the future is
    done, so a watch submitted just after another one stops could start a second thread.
    Here a thread is idle before its future completes."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Future[None]] | None]
        self._jobs = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._backlog = 0  # jobs queued while every thread was busy
        self._lock = threading.Lock()

    def submit(self, watch: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.size:
                name = f"crunch-outputs_{len(self._threads)}"
                thread = threading.Thread(target=self._serve, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog += 1
            self._jobs.put((watch, future))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            watch, future = job
            error: BaseException | None = None
            if future.set_running_or_notify_cancel():
                try:
                    watch()
                except BaseException as exc:  # handed to whoever waits on the future
                    error = exc
            with self._lock:  # idle (or on to a queued job) before the waiter wakes
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


WATCHERS = Watchers()
"""The process's: no thread is started by importing this module."""


class OutputHashes:
    """Watch a working folder and hash the files the workflow writes, once settled.

    The inputs (the files Setup placed), as the first scan finds them, are left to
    Setup's record. A file is hashed when two scans SETTLE seconds apart saw it
    unchanged, and kept only if it did not change while it was read. Links out of the
    folder are not followed, as on upload.
    """

    def __init__(
        self,
        root: Path,
        *,
        inputs: Collection[str] = (),
        exclude: Callable[[str], bool],
        settle: float = SETTLE,
        watchers: Watchers = WATCHERS,
    ) -> None:
        self.watchers = watchers
        self.root = os.path.realpath(root)
        self.inputs = inputs
        self.exclude = exclude
        self.settle = settle
        self._digests: Digests = {}
        self._lock = threading.Lock()
        self._stop = Stopper()
        self._watching: Future[None] | None = None

    def start(self) -> OutputHashes:
        self._watching = self.watchers.submit(self._watch)
        return self

    def stop(self) -> None:
        """Stop watching; a file half hashed is dropped, and Upload hashes it."""
        self._stop.stopped.set()
        if self._watching is not None:
            self._watching.result()

    def digests(self) -> Digests:
        with self._lock:
            return dict(self._digests)

    def _scan(self) -> dict[str, Fingerprint]:
        found: dict[str, Fingerprint] = {}
        for rel in walk_files(Path(self.root), warn=False):
            if self._stop.stopped.is_set():
                raise Interrupted("Stopped watching the workflow's files.")
            if not self.exclude(rel):
                try:
                    found[rel] = fingerprint(os.path.join(self.root, rel))
                except OSError:
                    continue  # removed meanwhile
        return found

    def _watch(self) -> None:
        lowest_priority()
        try:
            seen = self._scan()
            # An input the workflow changed before this scan is missed: Upload hashes it.
            inputs = {rel: found for rel, found in seen.items() if rel in self.inputs}
            pause = self.settle
            while not self._stop.stopped.wait(pause):
                started = time.monotonic()
                now = self._scan()
                # A folder of many files is scanned less often, to stay cheap.
                pause = max(self.settle, (time.monotonic() - started) / SCAN_SHARE)
                for rel, found in now.items():
                    if found == inputs.get(rel) or found != seen.get(rel):
                        continue  # an untouched input, or still changing
                    with self._lock:
                        done = self._digests.get(rel)
                    if done is None or done[0] != found:
                        self._hash(rel, found)
                seen = now
        except Interrupted:
            return
        except Exception:  # only a lost head start: Upload hashes whatever is missing
            logger.debug("Stopped hashing the workflow's files", exc_info=True)

    def _hash(self, rel: str, found: Fingerprint) -> None:
        path = os.path.join(self.root, rel)
        try:
            digest = md5_file(path, self._stop)
            if fingerprint(path) != found:
                return  # written while being read: hashed again once settled
        except OSError:
            return
        with self._lock:
            self._digests[rel] = (found, digest)
