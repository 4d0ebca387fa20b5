"""Streaming transfers between Django storage and the working directory.

Files stream in large chunks with their MD5 computed on the way, independent files
move in parallel, unchanged files are not moved again, names from storage never escape
the destination, and a partly written file never stands under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from crunchclient.exceptions import TransferError, UnsafePathError
from crunchclient.hashing import (
    CHUNK_SIZE,
    Checksums,
    Copy,
    Digests,
    fingerprint,
    fingerprint_of,
    md5_file,
)
from crunchclient.progress import Progress, TransferCancelled

logger = logging.getLogger(__name__)

SMALL_FILE = 1024 * 1024  # bytes: files below this are read in one call
KERNEL_CHUNK = 64 * 1024 * 1024  # bytes per copy_file_range call: a cancel check between
BATCH_FILES = 64  # small files handled by one worker task, to keep pool overhead low
BATCH_BYTES = 16 * 1024 * 1024  # bytes: a batch closes once it holds this much
PARTIAL_MARK = ".crunch-partial-"
FAST_FILE = 100e-6  # seconds: a local file copied faster than this is not waiting on the disk
S3_MULTIPART_THRESHOLD = 64 * 1024 * 1024  # bytes: below it an upload's ETag is its MD5
S3_PART_SIZE = 16 * 1024 * 1024  # bytes per ranged GET or uploaded part
S3_MIN_CONCURRENCY = 10  # requests in flight, boto3's default
S3_GET_ATTEMPTS = 5  # tries of a single-GET download whose stream breaks


@dataclass(frozen=True, kw_only=True)
class TransferResult:
    """What a transfer moved: files and bytes sent, files left alone, wall time; and how
    many of the files sent were hashed before (while the workflow ran)."""

    files: int
    bytes: int
    skipped: int
    seconds: float
    hashed_before: int = 0


class _Entry(NamedTuple):
    """A file in storage, relative to the transfer's prefix.

    A named tuple: a listing makes one per stored file, at a third of a frozen
    dataclass's cost, which a second setup of many small files notices.
    """

    rel: str
    size: int | None = None
    mtime_ns: int | None = None
    md5: str | None = None  # the store's own checksum, when it has one (S3 ETag)
    etag: str | None = None  # S3's ETag as stored, also a multipart one ("<md5>-<parts>")


# ---------------------------------------------------------------------------- paths


def safe_relative(name: str) -> str:
    """Return name as a clean relative posix path, refusing anything that escapes."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"Refusing empty or NUL-containing file name {name!r} from storage.")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(
            f"Refusing absolute path {name!r} from storage: remove or rename it in storage."
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise UnsafePathError(
            f"Refusing path {name!r} from storage: it escapes the dataset folder; "
            "remove or rename it in storage."
        )
    return "/".join(parts)


def _keep_mtime(path: Path | str, entry: _Entry) -> None:
    """Give a downloaded file the stored file's mtime: a later run knows it is untouched."""
    if entry.mtime_ns is not None:
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def _inside(path: Path, root: Path) -> bool:
    """Whether path, with every link resolved, lies within the already resolved root."""
    try:
        Path(os.path.realpath(path)).relative_to(root)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- copies


def _copy_kernel(source: str | Path, target: Path | str, progress: Progress, count: bool) -> None:
    """Copy inside the kernel (copy_file_range), stopping if cancelled; count the bytes
    on progress if count, else leave that to whoever hashes the file."""
    with open(source, "rb", buffering=0) as src, open(target, "xb", buffering=0) as dst:
        infd, outfd = src.fileno(), dst.fileno()
        try:
            while n := os.copy_file_range(infd, outfd, KERNEL_CHUNK):
                progress.advance(bytes=n if count else 0)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        # Start again from the beginning with the portable path.
        os.lseek(infd, 0, os.SEEK_SET)
        os.lseek(outfd, 0, os.SEEK_SET)
        os.ftruncate(outfd, 0)
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while n := src.readinto(buffer):
            dst.write(view[:n])
            progress.advance(bytes=n if count else 0)


def copy_file(
    source: str | Path,
    target: Path | str,
    size: int,
    progress: Progress,
    hashers: Executor | None,
    mtime_ns: int | None = None,
) -> str | None:
    """Copy source to the new file target and return the MD5 of what was copied.

    A small file is read once and hashed in memory. A large one is copied by the kernel
    while another thread hashes it from the page cache: MD5 (about 600 MB/s on one
    core) is the bottleneck, and this hides the copy behind it. Without hashers, a
    large file is only copied and None returned: the caller hashes it later. mtime_ns,
    if given, becomes the target's modification time.
    """
    if size < SMALL_FILE:
        return _copy_small(source, target, size, progress, mtime_ns)
    hashing = hashers.submit(md5_file, source, progress) if hashers is not None else None
    _copy_kernel(source, target, progress, count=hashing is None)
    if mtime_ns is not None:
        os.utime(target, ns=(mtime_ns, mtime_ns))
    return hashing.result() if hashing is not None else None


def _copy_small(
    source: str | Path, target: Path | str, size: int, progress: Progress, mtime_ns: int | None
) -> str:
    """Copy a small file with as few system calls as possible: one read, one write.

    Per-file overhead, not bytes, is what a tree of many small files costs.
    """
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # One byte more than expected: a short read is the end of a regular file, and
        # a file that grew since it was listed is still copied whole.
        data = os.read(fd, size + 1)
        if len(data) > size:
            parts = [data]
            while part := os.read(fd, CHUNK_SIZE):
                parts.append(part)
            data = b"".join(parts)
    finally:
        os.close(fd)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)
    progress.advance(bytes=len(data))
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _copy_stream(
    source: IO[bytes], target: IO[bytes], progress: Progress | _Counted | None = None
) -> tuple[int, str]:
    """Copy source to target in large chunks; return (bytes, md5) computed on the way."""
    digest = hashlib.md5(usedforsecurity=False)
    total = 0
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while n := readinto(buffer):
            chunk = view[:n]
            digest.update(chunk)
            target.write(chunk)
            total += n
            if progress is not None:
                progress.advance(bytes=n)
    else:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            target.write(chunk)
            total += len(chunk)
            if progress is not None:
                progress.advance(bytes=len(chunk))
    return total, digest.hexdigest()


def checksum_tree(
    directory: Path, *, exclude: Callable[[str], bool] | None = None, jobs: int = 8
) -> dict[str, str]:
    """Return {relative posix path: md5} of the files under directory.

    Links are followed only when they stay inside directory, so a workflow's link to a
    reference genome elsewhere is neither hashed nor later uploaded.
    """
    root = Path(os.path.realpath(directory))
    paths = [rel for rel in walk_files(root) if exclude is None or not exclude(rel)]
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        digests = list(pool.map(lambda rel: md5_file(root / rel), paths))
    return dict(sorted(zip(paths, digests, strict=True)))


def walk_files(root: Path, *, warn: bool = True) -> Iterator[str]:
    """Yield the relative posix paths of regular files under root, staying inside it
    (and, if warn, log each link that leads out)."""
    stack = [""]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(root / current if current else root))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = f"{current}/{entry.name}" if current else entry.name
            if PARTIAL_MARK in entry.name:
                continue  # left by a killed transfer; never a result
            if entry.is_symlink():
                if not _inside(Path(entry.path), root):
                    if warn:
                        logger.warning("Not following link %r: it points outside %s", rel, root)
                    continue
                if entry.is_file():
                    yield rel
                # A linked directory inside the tree is reached through its real path.
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                yield rel


# ---------------------------------------------------------------------------- storages


class _Backend:
    """How one kind of storage lists, reads and writes files: the portable, slow way."""

    def __init__(self, storage: Any, jobs: int) -> None:
        self.storage = storage
        self.hashers = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="crunch-md5")

    def close(self) -> None:
        """Release what the backend holds (threads, connections)."""
        self.hashers.shutdown(cancel_futures=True)

    def prepare(self, prefix: str) -> None:
        """Learn what is stored under prefix, if one listing is cheaper than many lookups."""

    def list(self, prefix: str) -> list[_Entry]:
        entries: list[_Entry] = []
        stack = [prefix.strip("/")]
        base = prefix.strip("/")
        while stack:
            current = stack.pop()
            directories, files = self.storage.listdir(current)
            for name in directories:
                stack.append(_join(current, name))
            for name in files:
                full = _join(current, name)
                rel = full[len(base) + 1 :] if base else full
                entries.append(_Entry(rel=rel))
        return entries

    def stored(self, name: str, rel: str) -> _Entry | None:
        if not self.storage.exists(name):
            return None
        return _Entry(rel=rel, size=self.storage.size(name))

    def stored_md5(self, name: str, entry: _Entry) -> str | None:
        digest = hashlib.md5(usedforsecurity=False)
        with self.storage.open(name, "rb") as source:
            while chunk := source.read(CHUNK_SIZE):
                digest.update(chunk)
        return digest.hexdigest()

    def matches(self, name: str, stored: _Entry, local: str, md5: str) -> bool:
        """Whether the stored file holds the same bytes as local, whose MD5 is md5."""
        return self.stored_md5(name, stored) == md5

    def source(self, name: str) -> str | None:
        """The stored file's path on this machine, if the storage has one."""
        return None

    def download(self, name: str, entry: _Entry, partial: str, progress: Progress) -> str | None:
        """Copy the stored file to the new file partial; return its MD5, or None if it
        is to be hashed later, from the copy (see hashing.Checksums)."""
        with self.storage.open(name, "rb") as source, open(partial, "xb") as target:
            _size, md5 = _copy_stream(source, target, progress)
        _keep_mtime(partial, entry)
        return md5

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        from django.core.files import File

        md5 = md5 or md5_file(local)
        if self.storage.exists(name):
            self.storage.delete(name)
        with open(local, "rb") as source:
            saved = self.storage.save(name, File(source, name=posixpath.basename(name)))
        if saved != name:
            raise TransferError(
                f"Storage saved {name!r} as {saved!r}: configure it to overwrite files."
            )
        progress.advance(bytes=size)
        return md5


class _LocalBackend(_Backend):
    """Storage on a local disk: copy as the operating system does."""

    def list(self, prefix: str) -> list[_Entry]:
        self._resolve(prefix)
        root = Path(self.base)
        entries: list[_Entry] = []
        stack = [""]
        while stack:
            current = stack.pop()
            try:
                scan = list(os.scandir(root / current if current else root))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for item in scan:
                rel = f"{current}/{item.name}" if current else item.name
                if PARTIAL_MARK in item.name:
                    continue  # an upload in progress, or killed
                if item.is_dir():
                    stack.append(rel)
                elif item.is_file():
                    info = item.stat()
                    entries.append(_Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns))
        return entries

    def _resolve(self, prefix: str) -> None:
        # Resolve the prefix once: storage.path() per file costs more than the copy of
        # a small file.
        self.prefix = prefix.strip("/")
        self.base = str(self.storage.path(self.prefix))
        self.folders: set[str] = set()
        self.token = secrets.token_hex(4)
        mode = getattr(self.storage, "file_permissions_mode", None)
        umask = os.umask(0o022)
        os.umask(umask)
        # A new file gets 0o666 & ~umask: chmod only when that is not the storage's mode.
        self.chmod = mode if mode is not None and mode != 0o666 & ~umask else None

    def prepare(self, prefix: str) -> None:
        # One walk of the stored folder instead of a stat per file to upload.
        self.listing = {entry.rel: entry for entry in self.list(prefix)}

    def _target(self, name: str) -> str:
        if self.prefix and name.startswith(f"{self.prefix}/"):
            return os.path.join(self.base, name[len(self.prefix) + 1 :])
        return str(self.storage.path(name))

    def stored(self, name: str, rel: str) -> _Entry | None:
        if self.prefix and name.startswith(f"{self.prefix}/"):
            return self.listing.get(rel)
        try:
            info = os.stat(self._target(name))
        except FileNotFoundError:
            return None
        return _Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns)

    def stored_md5(self, name: str, entry: _Entry) -> str | None:
        return md5_file(self._target(name))

    def source(self, name: str) -> str | None:
        return self._target(name)

    def download(self, name: str, entry: _Entry, partial: str, progress: Progress) -> str | None:
        size = entry.size if entry.size is not None else SMALL_FILE
        # Large files are hashed later, from the copy: see hashing.Checksums.
        return copy_file(self._target(name), partial, size, progress, None, entry.mtime_ns)

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        # Written through the path, so the stored file keeps its name instead of
        # FileSystemStorage's renamed copy ("a_x7Kq2.txt") beside the old one.
        target = self._target(name)
        folder = os.path.dirname(target)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
        partial = f"{target}{PARTIAL_MARK}{self.token}"
        try:
            # A file hashed already is only copied.
            copied = copy_file(local, partial, size, progress, None if md5 else self.hashers)
            if self.chmod is not None:
                os.chmod(partial, self.chmod)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        md5 = md5 or copied
        assert md5 is not None
        return md5


class _Counted:
    """Pass progress on and remember how much was counted, to take it back on a retry."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bytes = 0

    def advance(self, *, bytes: int = 0, files: int = 0) -> None:
        self.progress.advance(bytes=bytes, files=files)
        self.bytes += bytes


def _multipart_etag(path: Path | str, part_size: int) -> str:
    """Return the ETag S3 gives path uploaded in parts of part_size: md5(part md5s)-parts."""
    digests: list[bytes] = []
    with open(path, "rb", buffering=0) as source:
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = part_size
            while left and (n := source.readinto(view[: min(left, CHUNK_SIZE)])):
                part.update(view[:n])
                left -= n
            if left == part_size:
                break
            digests.append(part.digest())
            if left:
                break
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(digests)}"


class _HashingWriter:
    """A write-only, non-seekable file for boto3: it hashes the bytes as they arrive.

    Non-seekable makes s3transfer deliver the ranges in order, so the MD5 is computed
    while the object streams instead of in a second pass over the file.
    """

    def __init__(self, target: IO[bytes], progress: Progress) -> None:
        self.target = target
        self.progress = progress
        self.digest = hashlib.md5(usedforsecurity=False)

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.target.write(data)
        self.progress.advance(bytes=len(data))
        return len(data)


class _S3Backend(_Backend):
    """S3 through one boto3 transfer manager, so files move at boto3 speed."""

    def __init__(self, storage: Any, jobs: int) -> None:
        super().__init__(storage, jobs)
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        self.client = storage.connection.meta.client
        self.bucket = storage.bucket_name
        self.config = TransferConfig(
            multipart_threshold=S3_MULTIPART_THRESHOLD,
            multipart_chunksize=S3_PART_SIZE,
            max_concurrency=max(S3_MIN_CONCURRENCY, jobs),
            max_io_queue=64,
            use_threads=True,
        )
        # Ranges held in memory to be written in order: bounds the client's memory.
        self.config.max_in_memory_download_chunks = 64
        self.manager = create_transfer_manager(self.client, self.config)
        self.listing: dict[str, _Entry] | None = None

    def close(self) -> None:
        self.manager.shutdown()
        super().close()

    def prepare(self, prefix: str) -> None:
        # One paginated listing gives every size and ETag: no HEAD per file.
        self.listing = {entry.rel: entry for entry in self.list(prefix)}

    def stored(self, name: str, rel: str) -> _Entry | None:
        if self.listing is None:
            raise RuntimeError("prepare() the S3 backend before asking what is stored")
        return self.listing.get(rel)

    def stored_md5(self, name: str, entry: _Entry) -> str | None:
        if entry.md5 is not None:
            return entry.md5
        # A multipart ETag is no MD5; objects uploaded by earlier versions carry the MD5
        # in their metadata.
        head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        return head.get("Metadata", {}).get("md5")

    def matches(self, name: str, stored: _Entry, local: str, md5: str) -> bool:
        if stored.md5 is not None or stored.etag is None:
            return stored.md5 == md5
        if self.stored_md5(name, stored) == md5:
            return True
        # A multipart object is known by the MD5 of its parts' MD5s: split the local
        # file as the upload would have and compare.
        return _multipart_etag(local, self._part_size(stored.size or 0)) == stored.etag

    def _part_size(self, size: int) -> int:
        from s3transfer.utils import ChunksizeAdjuster

        return int(ChunksizeAdjuster().adjust_chunksize(self.config.multipart_chunksize, size))

    def key(self, name: str) -> str:
        from storages.utils import clean_name

        return str(self.storage._normalize_name(clean_name(name)))

    def list(self, prefix: str) -> list[_Entry]:
        base = self.key(prefix.strip("/")).rstrip("/")
        search = f"{base}/" if base else ""
        entries: list[_Entry] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=search):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/"):
                    continue  # a folder marker made by a console, not a file
                etag = item.get("ETag", "").strip('"')
                entries.append(
                    _Entry(
                        rel=key[len(search) :],
                        size=item["Size"],
                        mtime_ns=int(item["LastModified"].timestamp()) * 1_000_000_000,
                        md5=etag if etag and "-" not in etag else None,
                        etag=etag or None,
                    )
                )
        return entries

    def download(self, name: str, entry: _Entry, partial: str, progress: Progress) -> str | None:
        if entry.size is not None and entry.size < self.config.multipart_threshold:
            # One GET, streamed and hashed in this worker thread: many files then hash
            # on every core instead of queueing behind the transfer manager's single
            # writer thread.
            md5 = self._get(name, partial, progress)
        else:
            with open(partial, "xb") as target:
                writer = _HashingWriter(target, progress)
                self.manager.download(self.bucket, self.key(name), writer).result()
            md5 = writer.digest.hexdigest()
        _keep_mtime(partial, entry)
        return md5

    def _get(self, name: str, partial: str, progress: Progress) -> str:
        """Stream one object into the new file partial; retry a broken stream from the start."""
        from botocore.exceptions import (
            ConnectionError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        for attempt in range(S3_GET_ATTEMPTS):
            done = 0
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
                with contextlib.closing(body), open(partial, "wb" if attempt else "xb") as target:
                    counted = _Counted(progress)
                    _size, md5 = _copy_stream(body, target, counted)
                    done = counted.bytes
                return md5
            except (ConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError):
                if attempt + 1 == S3_GET_ATTEMPTS:
                    raise
                progress.advance(bytes=-done)
                logger.warning("Retrying the download of %r after a broken stream", name)
        raise AssertionError("unreachable")

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        from s3transfer.subscribers import BaseSubscriber

        class Subscriber(BaseSubscriber):  # type: ignore[misc]
            def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
                progress.advance(bytes=bytes_transferred)

        # No MD5 is needed up front (a single-part ETag is the MD5, a multipart one the
        # MD5 of the parts', which matches() recomputes), so the file is hashed here
        # while the transfer manager uploads it, not in a pass before the upload.
        params = dict(self.storage._get_write_parameters(name))
        future = self.manager.upload(
            str(local), self.bucket, self.key(name), extra_args=params, subscribers=[Subscriber()]
        )
        try:
            md5 = md5 or md5_file(local)
        except BaseException:
            future.cancel()
            with contextlib.suppress(Exception):
                future.result()
            raise
        future.result()
        return md5


def _backend(storage: Any, jobs: int) -> _Backend:
    """Pick the fastest way to talk to this storage."""
    # An S3Storage's module is imported already; importing it here would load boto3
    # (most of a second) for every local-disk client.
    s3 = sys.modules.get("storages.backends.s3")
    if s3 is not None and isinstance(storage, s3.S3Storage):
        return _S3Backend(storage, jobs)
    try:
        storage.path("")
    except NotImplementedError:
        return _Backend(storage, jobs)
    return _LocalBackend(storage, jobs)


# ---------------------------------------------------------------------------- transfers


def _workers(backend: _Backend, jobs: int) -> int:
    """Threads for the file pool: on local disk more than the cores only adds contention,
    because hashing is the bottleneck; remote storage wants every job it is given."""
    if isinstance(backend, _LocalBackend):
        return max(1, min(jobs, os.cpu_count() or 1))
    return max(1, jobs)


def _batches(items: list[tuple[_Entry, int]]) -> Iterator[list[_Entry]]:
    """Group small files so that one pool task handles many of them."""
    batch: list[_Entry] = []
    size = 0
    for entry, length in items:
        if length >= BATCH_BYTES:
            yield [entry]
            continue
        batch.append(entry)
        size += length
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _run_parallel(
    work: Callable[[list[_Entry]], None],
    batches: list[list[_Entry]],
    jobs: int,
    progress: Progress,
    *,
    local: bool = False,
) -> None:
    """Run work on every batch with at most jobs threads.

    The first error, or Ctrl+C, cancels the rest: workers stop at their next chunk and
    remove their partial files, so the pool winds down in a moment.

    On local disk the first batch of several files runs on this thread first. Threads
    help while files wait on a disk or a network filesystem; when each small file took
    under FAST_FILE, the kernel answers at once and threads would only pass the GIL to
    each other, so the rest runs here too.
    """
    several = next((i for i, batch in enumerate(batches) if len(batch) > 1), None)
    if local and jobs > 1 and several is not None and len(batches) > 1:
        probe = batches[several]
        started = time.perf_counter()
        work(probe)
        if (time.perf_counter() - started) / len(probe) < FAST_FILE:
            jobs = 1
        batches = batches[:several] + batches[several + 1 :]
    if jobs <= 1 or len(batches) <= 1:
        for batch in batches:
            work(batch)
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="crunch-transfer") as pool:
        futures: list[Future[None]] = [pool.submit(work, batch) for batch in batches]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            progress.cancel()
            for future in futures:
                future.cancel()
            raise
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
        # The cause first: the others only stopped because of it.
        failed.sort(key=lambda f: isinstance(f.exception(), TransferCancelled))
        if failed:
            progress.cancel()
            for future in futures:
                future.cancel()
            raise failed[0].exception()  # type: ignore[misc]


def fetch_tree(
    storage: Any,
    prefix: str,
    destination: Path,
    *,
    jobs: int = 8,
    known: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> Checksums:
    """Copy every file under prefix into destination; return their checksums.

    The files are in place on return; the MD5s of large files the kernel copied may
    still be computing (Checksums.result() waits for them). A local file with the
    stored file's size and modification time (which a download gives its copy) is
    kept, with its MD5 from known, else hashed again; without that, a local file with
    the stored file's MD5 (S3's ETag) is kept.
    """
    backend = _backend(storage, jobs)
    try:
        return _download(backend, prefix, destination, jobs=jobs, known=known, quiet=quiet)
    finally:
        backend.close()


def download_tree(
    storage: Any,
    prefix: str,
    destination: Path,
    *,
    jobs: int = 8,
    known: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, str]:
    """fetch_tree(), then wait for the checksums: return {relative path: md5}."""
    return fetch_tree(storage, prefix, destination, jobs=jobs, known=known, quiet=quiet).result()


def _download(
    backend: _Backend,
    prefix: str,
    destination: Path,
    *,
    jobs: int,
    known: Mapping[str, str] | None,
    quiet: bool,
) -> Checksums:
    entries = backend.list(prefix)
    if not isinstance(backend, _LocalBackend):  # a local listing builds its names itself
        entries = [_checked(entry) for entry in entries]
    destination.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(destination))
    known = known or {}
    checksums: dict[str, str] = {}
    copies: list[Copy] = []  # kernel copies, hashed in the background
    to_fetch: list[tuple[_Entry, int]] = []
    token = secrets.token_hex(4)

    # Create folders once, refuse any that a link would take out of the destination, and
    # look at what is already there (a resumed run) with one scan per existing folder.
    present: dict[str, os.stat_result] = {}
    made: dict[str, bool] = {"": True}
    for parent in sorted({e.rel.rpartition("/")[0] for e in entries}):
        if _prepare_folder(root, parent, made):
            for item in os.scandir(os.path.join(root, parent)):
                if PARTIAL_MARK in item.name:
                    if item.is_file(follow_symlinks=False):
                        os.unlink(item.path)  # left half-written by a killed run
                elif item.is_file(follow_symlinks=False):
                    rel = f"{parent}/{item.name}" if parent else item.name
                    present[rel] = item.stat(follow_symlinks=False)

    skipped = 0
    for entry in entries:
        info = present.get(entry.rel)
        kept = None
        if info is not None:
            kept = _reusable(root, entry, info, known.get(entry.rel), backend, prefix)
        if kept is None:
            to_fetch.append((entry, entry.size or 0))
            continue
        skipped += 1
        if isinstance(kept, Copy):
            copies.append(kept)
        else:
            checksums[entry.rel] = kept

    to_fetch.sort(key=lambda item: -item[1])  # large first: no lone big file at the end
    total_bytes = sum(size for _entry, size in to_fetch)
    lock = threading.Lock()
    started = time.monotonic()

    with Progress(
        "download", total_bytes=total_bytes, total_files=len(to_fetch), quiet=quiet
    ) as progress:
        base = str(root)

        def fetch(batch: list[_Entry]) -> None:
            for entry in batch:
                name = _join(prefix, entry.rel)
                target = os.path.join(base, entry.rel)
                partial = f"{target}{PARTIAL_MARK}{token}"
                try:
                    md5 = backend.download(name, entry, partial, progress)
                    os.replace(partial, target)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(partial)
                    raise
                if md5 is None:  # copied by the kernel: hashed later, from the copy
                    source = backend.source(name)
                    assert source is not None
                    copy = Copy(
                        rel=entry.rel, local=target, source=source, fingerprint=fingerprint(target)
                    )
                    with lock:
                        copies.append(copy)
                else:
                    with lock:
                        checksums[entry.rel] = md5
                progress.advance(files=1)

        _run_parallel(
            fetch, list(_batches(to_fetch)), _workers(backend, jobs), progress,
            local=isinstance(backend, _LocalBackend),
        )  # fmt: skip

    logger.info(
        "Downloaded %d files (%d bytes), kept %d, in %.2fs",
        len(to_fetch),
        total_bytes,
        skipped,
        time.monotonic() - started,
    )
    return Checksums(checksums, copies, jobs=jobs)


def _prepare_folder(root: Path, parent: str, made: dict[str, bool]) -> bool:
    """Make root/parent (a checked relative path); return whether it existed before.

    Refuse a folder that a link takes out of root: files from storage must not land
    in whatever a workflow's link points at. made caches the folders already checked
    (folder -> existed before), so each level costs one mkdir, not a realpath.
    """
    if parent in made:
        return made[parent]
    if parent:
        _prepare_folder(root, posixpath.dirname(parent), made)  # the ancestors first
    folder = os.path.join(root, parent)
    try:
        os.mkdir(folder)
        existed = False  # a real folder just made inside a checked one: inside root
    except FileExistsError:
        existed = True
        if not stat.S_ISDIR(os.lstat(folder).st_mode) and not _inside(Path(folder), root):
            raise _outside(parent, root) from None
    made[parent] = existed
    return existed


def _outside(parent: str, root: Path) -> UnsafePathError:
    return UnsafePathError(
        f"Refusing to write into {parent!r}: it links outside {str(root)!r}; remove the link."
    )


def _checked(entry: _Entry) -> _Entry:
    """The entry with its name made a clean relative path, or UnsafePathError."""
    rel = safe_relative(entry.rel)
    return entry if rel == entry.rel else entry._replace(rel=rel)


def _reusable(
    root: Path,
    entry: _Entry,
    info: os.stat_result,
    recorded: str | None,
    backend: _Backend,
    prefix: str,
) -> str | Copy | None:
    """Return the MD5 of the local copy if it need not be downloaded again (or the Copy
    to hash later), else None.

    Builds the file's path only when it must be read: a resumed run of thousands of
    untouched files costs one stat each and nothing more.
    """
    if entry.size is not None and info.st_size != entry.size:
        return None
    if entry.mtime_ns is not None and info.st_mtime_ns == entry.mtime_ns:
        # As a download left it: a file stands under its name only once complete and
        # given the stored mtime, so even a killed run's files are kept.
        if recorded is not None:
            return recorded
        source = backend.source(_join(prefix, entry.rel))
        if source is not None:
            local = os.path.join(root, entry.rel)
            return Copy(rel=entry.rel, local=local, source=source, fingerprint=fingerprint_of(info))
    expected = recorded or entry.md5
    if expected is None:
        return None
    return expected if md5_file(root / entry.rel) == expected else None


def upload_files(
    storage: Any,
    prefix: str,
    directory: Path,
    paths: Iterable[str],
    *,
    jobs: int = 8,
    quiet: bool = False,
    checksums: Mapping[str, str] | None = None,
) -> TransferResult:
    """Send each path (relative to directory) to storage[prefix/path], replacing it.

    A stored file with the same MD5 is left alone. Links that lead out of directory are
    not followed: a workflow's link to shared reference data must not be copied up.
    checksums (relative path -> md5, e.g. from checksum_tree) saves hashing again.
    """
    root = Path(os.path.realpath(directory))
    rels: list[str] = []
    refused = 0
    for path in paths:
        rel = safe_relative(str(path).replace(os.sep, "/"))
        if not _inside(root / rel, root):
            logger.warning("Not uploading %r: it links outside %s", rel, root)
            refused += 1
            continue
        rels.append(rel)
    _checksums, result = _send(
        storage, prefix, root, rels, jobs=jobs, quiet=quiet, hints=checksums or {}, known={}
    )
    return TransferResult(
        files=result.files,
        bytes=result.bytes,
        skipped=result.skipped + refused,
        seconds=result.seconds,
    )


def upload_tree(
    storage: Any,
    prefix: str,
    directory: Path,
    *,
    known: Mapping[str, str] | None = None,
    hashed: Digests | None = None,
    exclude: Callable[[str], bool] | None = None,
    jobs: int = 8,
    quiet: bool = False,
) -> tuple[dict[str, str], TransferResult]:
    """Checksum every file under directory and send the new and modified ones.

    Return ({relative path: md5} of all files, what moved). One pass instead of
    checksum_tree() then upload_files(): a file still as download_tree() left it (in
    known, same size and modification time as the stored file) is not read at all; a
    file in hashed (see outputs.OutputHashes) with the same fingerprint is copied
    without being hashed; any other file is hashed while it is copied.
    """
    root = Path(os.path.realpath(directory))
    rels = [rel for rel in walk_files(root) if exclude is None or not exclude(rel)]
    return _send(
        storage, prefix, root, rels, jobs=jobs, quiet=quiet, hints={}, known=known or {},
        hashed=hashed,
    )  # fmt: skip


def _send(
    storage: Any,
    prefix: str,
    root: Path,
    rels: list[str],
    *,
    jobs: int,
    quiet: bool,
    hints: Mapping[str, str],
    known: Mapping[str, str],
    hashed: Digests | None = None,
) -> tuple[dict[str, str], TransferResult]:
    """Upload rels (already checked to stay inside root); return their MD5s and a result."""
    started = time.monotonic()
    items: list[tuple[_Entry, int]] = []
    skipped = 0
    base = str(root)
    hints = dict(hints)
    early: set[str] = set()  # hashed while the workflow ran, and unchanged since
    for rel in rels:
        try:
            info = os.stat(os.path.join(base, rel))
        except FileNotFoundError as exc:
            raise TransferError(f"Cannot upload {rel!r}: no such file in {str(root)!r}.") from exc
        if not stat.S_ISREG(info.st_mode):
            skipped += 1
            continue
        items.append((_Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns), info.st_size))
        if hashed and (earlier := hashed.get(rel)) is not None:
            if earlier[0] == fingerprint_of(info):
                hints[rel] = earlier[1]
                early.add(rel)
    # Large files first, so the last minutes are not one big file on one thread.
    items.sort(key=lambda item: -item[1])

    backend = _backend(storage, jobs)
    checksums: dict[str, str] = {}
    sent_files = 0
    sent_bytes = 0
    sent_early = 0
    lock = threading.Lock()
    try:
        if items:
            backend.prepare(prefix)
        total = sum(size for _e, size in items)
        with Progress("upload", total_bytes=total, total_files=len(items), quiet=quiet) as progress:

            def send(batch: list[_Entry]) -> None:
                nonlocal sent_files, sent_bytes, sent_early, skipped
                for entry in batch:
                    size = entry.size or 0
                    local = os.path.join(base, entry.rel)
                    name = _join(prefix, entry.rel)
                    stored = backend.stored(name, entry.rel)
                    md5 = hints.get(entry.rel)
                    same = False
                    if stored is not None and stored.size == size:
                        recorded = known.get(entry.rel)
                        if recorded is not None and stored.mtime_ns == entry.mtime_ns:
                            # Untouched since download_tree() gave it the stored mtime.
                            md5, same = recorded, True
                        else:
                            md5 = md5 or md5_file(local)
                            same = backend.matches(name, stored, local, md5)
                    if same:
                        progress.advance(bytes=size, files=1)
                    else:
                        md5 = backend.upload(name, local, size, md5, progress)
                        progress.advance(files=1)
                    with lock:
                        checksums[entry.rel] = md5  # type: ignore[assignment]
                        if same:
                            skipped += 1
                        else:
                            sent_files += 1
                            sent_bytes += size
                            sent_early += entry.rel in early

            _run_parallel(
                send, list(_batches(items)), _workers(backend, jobs), progress,
                local=isinstance(backend, _LocalBackend),
            )  # fmt: skip
    finally:
        backend.close()

    result = TransferResult(
        files=sent_files, bytes=sent_bytes, skipped=skipped, seconds=time.monotonic() - started,
        hashed_before=sent_early,
    )  # fmt: skip
    logger.info(
        "Uploaded %d files (%d bytes, %d hashed before), kept %d, in %.2fs",
        result.files, result.bytes, result.hashed_before, result.skipped, result.seconds,
    )  # fmt: skip
    return dict(sorted(checksums.items())), result
