"""MD5 of files: in large chunks, and in the background for copies the kernel made.

MD5 runs at a fifth of the speed of a kernel copy on one core, and one file's MD5
cannot be split across cores. Hashing every downloaded byte before the workflow starts
would therefore keep a node idle for most of its setup. The copies the kernel made are
hashed here instead, at the lowest CPU priority, while the workflow runs; Upload needs
them only to record them, so it sends the workflow's files meanwhile, and what is left of
them is then finished at normal priority (``Checksums.hurry``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Protocol, cast

from crunchclient.exceptions import Interrupted, TransferError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 4 * 1024 * 1024  # bytes: large enough for full disk speed, small for memory
WAIT_SLICE = 0.5  # seconds between checks for a stop while waiting for checksums


class Counter(Protocol):
    """Takes the bytes as they are hashed; raises to stop the hashing."""

    def advance(self, *, bytes: int = 0, files: int = 0) -> None: ...


class Readable(Protocol):
    """A binary source read in chunks: a storage's File, an HTTP body."""

    def read(self, size: int, /) -> bytes: ...


class ReadsInto(Protocol):
    """A binary source that fills a buffer: a file on disk."""

    def readinto(self, buffer: bytearray, /) -> int | None: ...


Source = Readable | ReadsInto


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def _chunks(source: Source) -> Iterator[bytes | memoryview]:
    """Source in CHUNK_SIZE pieces, into one reused buffer where the source allows it."""
    readinto = getattr(source, "readinto", None)
    if readinto is None:
        read = cast(Readable, source).read
        while chunk := read(CHUNK_SIZE):
            yield chunk
        return
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while n := readinto(buffer):
        yield view[:n]


def md5_stream(
    source: Source, target: Writable | None = None, progress: Counter | None = None
) -> tuple[int, str]:
    """Read source to its end (copying it to target, if given); return (bytes, md5).

    The one chunked MD5 loop: files, stored files and downloads are all hashed here.
    """
    digest = hashlib.md5(usedforsecurity=False)
    total = 0
    for chunk in _chunks(source):
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
        total += len(chunk)
        if progress is not None:
            progress.advance(bytes=len(chunk))
    return total, digest.hexdigest()


def md5_file(path: Path | str, progress: Counter | None = None) -> str:
    """Return the MD5 hex digest of a file, read in large chunks."""
    with open(path, "rb", buffering=0) as source:
        return md5_stream(source, None, progress)[1]


class _Part:
    """At most size bytes of a raw file, from where it stands: one part of a multipart upload."""

    def __init__(self, source: FileIO, size: int) -> None:
        self.source = source
        self.left = size

    def readinto(self, buffer: bytearray) -> int:
        if not self.left:
            return 0
        n = self.source.readinto(memoryview(buffer)[: min(self.left, len(buffer))]) or 0
        self.left -= n
        return n


def multipart_etag(path: Path | str, part_size: int) -> str:
    """Return the ETag S3 gives path uploaded in parts of part_size: md5(part md5s)-parts."""
    digests: list[bytes] = []
    with open(path, "rb", buffering=0) as source:
        while True:
            size, digest = md5_stream(_Part(source, part_size))
            if not size:
                break
            digests.append(bytes.fromhex(digest))
            if size < part_size:
                break
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(digests)}"


Fingerprint = tuple[int, int, int, int]

Digests = dict[str, tuple[Fingerprint, str]]
"""{relative path: (fingerprint when hashed, md5)}"""


def fingerprint(path: str) -> Fingerprint:
    """What changes when anyone writes to a file: size, mtime, ctime and inode."""
    return fingerprint_of(os.stat(path))


def fingerprint_of(info: os.stat_result) -> Fingerprint:
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


@dataclass(frozen=True, kw_only=True)
class Copy:
    """A file the kernel copied from source (the stored file) to local, not yet hashed."""

    rel: str
    local: str
    source: str
    fingerprint: Fingerprint  # of local, taken right after the copy


class Stopper:
    """Raises Interrupted in the hashing threads once stop() is called."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def advance(self, *, bytes: int = 0, files: int = 0) -> None:
        if self.stopped.is_set():
            raise Interrupted("Checksums stopped.")


def lowest_priority() -> None:
    """Make the calling thread yield the CPU to the workflow (Linux sets nice per thread)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Checksums:
    """The MD5s of a download: known ones at once, kernel copies' when hashed.

    A copy that the workflow changed before its turn is hashed from storage instead,
    so the record always holds the files as they were downloaded.
    """

    def __init__(
        self, known: dict[str, str], copies: Sequence[Copy] = (), *, jobs: int = 2
    ) -> None:
        self.future: Future[dict[str, str]] = Future()
        self.paths = [*known, *(copy.rel for copy in copies)]
        self.known = dict(known)
        """The MD5s known at once (hashed while copied, or recorded before)."""
        self.pending = frozenset(copy.rel for copy in copies)
        """The paths whose MD5 is computed in the background."""
        self._stop = Stopper()
        self._urgent = threading.Event()
        self._handed: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._todo: queue.SimpleQueue[tuple[int, Copy]] = queue.SimpleQueue()
        self._copies = list(copies)
        self._digests = [""] * len(copies)
        self._left = len(copies)
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.seconds = 0.0
        self.workers = 0
        if not copies:
            self.future.set_result(dict(sorted(known.items())))
            return
        for index, copy in enumerate(copies):
            self._todo.put((index, copy))
        self.workers = max(1, min(jobs, os.cpu_count() or 1, len(copies)))
        for number in range(self.workers):
            threading.Thread(
                target=self._work, args=(True,), daemon=True, name=f"crunch-md5_{number}"
            ).start()

    def _work(self, niced: bool) -> None:
        """Hash copies until none is left; a thread of normal priority (see hurry) also
        finishes the files the others hand over, until every MD5 is known."""
        if niced:
            lowest_priority()
        while not self.future.done():
            if not niced:
                with contextlib.suppress(queue.Empty):
                    self._handed.get_nowait()()
                    continue
            try:
                index, copy = self._todo.get_nowait()
            except queue.Empty:
                if niced:
                    return
                with contextlib.suppress(queue.Empty):
                    self._handed.get(timeout=WAIT_SLICE)()
                continue
            try:
                digest = self._hash(copy, niced=niced)
            except BaseException as exc:  # handed to whoever waits for the result
                with self._lock:
                    if not self.future.done():
                        self.stop()  # the other files stop at their next chunk
                        self.future.set_exception(exc)
                return
            self._finished(index, digest)

    def _finished(self, index: int, digest: str) -> None:
        with self._lock:
            self._digests[index] = digest
            self._left -= 1
            if self._left or self.future.done():
                return
        self.seconds = time.monotonic() - self.started
        logger.debug("Hashed %d copied file(s) in %.2fs", len(self._copies), self.seconds)
        result = dict(self.known)
        result.update(
            (copy.rel, digest) for copy, digest in zip(self._copies, self._digests, strict=True)
        )
        self.future.set_result(dict(sorted(result.items())))

    def _hash(self, copy: Copy, *, niced: bool) -> str:
        with contextlib.suppress(FileNotFoundError):
            if fingerprint(copy.local) == copy.fingerprint:
                digest = self._md5(copy.local, niced=niced)
                if fingerprint(copy.local) == copy.fingerprint:
                    return digest
        # The workflow got there first: the stored file still holds the downloaded bytes.
        try:
            return self._md5(copy.source, niced=niced)
        except OSError as exc:
            raise TransferError(
                f"Cannot record the checksum of {copy.rel!r}: the workflow changed it before "
                f"it was hashed and the stored file can no longer be read ({exc.strerror})."
            ) from exc

    def _md5(self, path: str, *, niced: bool) -> str:
        """path's MD5; on a thread of the lowest priority, until hurry() is called: the
        rest of the file then goes to a thread of normal priority, which this one awaits."""
        digest = hashlib.md5(usedforsecurity=False)
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        with open(path, "rb", buffering=0) as source:

            def step() -> bool:
                n = source.readinto(buffer)
                if n:
                    digest.update(view[:n])
                    self._stop.advance()
                return bool(n)

            while not (niced and self._urgent.is_set()):
                if not step():
                    return digest.hexdigest()
            finished: Future[None] = Future()

            def finish() -> None:
                try:
                    while step():
                        pass
                except BaseException as exc:  # handed to the waiting thread
                    finished.set_exception(exc)
                else:
                    finished.set_result(None)

            self._handed.put(finish)
            finished.result()
        return digest.hexdigest()

    def reads_storage(self) -> bool:
        """Whether an MD5 still to come is read from storage: its copy here was changed
        (by the workflow) or removed. Uploading over that stored file must wait for it."""
        if self.done():
            return False
        for copy in self._copies:
            try:
                if fingerprint(copy.local) != copy.fingerprint:
                    return True
            except OSError:
                return True
        return False

    def hurry(self) -> None:
        """The MD5s are awaited now (the workflow ended): finish them at normal priority.

        A thread cannot raise the priority it lowered, and a new thread gets the priority
        of the one that starts it: threads started here, by the caller, hash the files
        not begun yet and take over those being hashed, from where they stand."""
        if self.done() or self._urgent.is_set():
            return
        for number in range(self.workers):
            threading.Thread(
                target=self._work, args=(False,), daemon=True, name=f"crunch-md5-now_{number}"
            ).start()
        self._urgent.set()

    def done(self) -> bool:
        return self.future.done()

    def result(self, check: Callable[[], None] | None = None) -> dict[str, str]:
        """Wait for every checksum, hurried; check() is called now and then and may raise
        to stop."""
        self.hurry()
        while True:
            if check is not None:
                check()
            try:
                return self.future.result(timeout=WAIT_SLICE)
            except WaitTimeout:
                continue

    def stop(self) -> None:
        """Stop hashing: the dataset ended before Upload needed the checksums."""
        self._stop.stopped.set()
