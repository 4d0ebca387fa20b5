"""Copies between two files on this machine: in the kernel, or in one pass that hashes
what it copies."""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import Executor, Future
from io import FileIO
from pathlib import Path

from crunchclient.transfer.hashing import CHUNK_SIZE, Counter
from crunchclient.transfer.paths import write_all

SMALL_FILE = 1024 * 1024  # bytes: files below this are read in one call
KERNEL_CHUNK = 64 * 1024 * 1024  # bytes per copy_file_range call: a cancel check between


def copy_file(
    source: str | Path,
    target: Path | str,
    size: int,
    progress: Counter,
    writers: Executor | None,
    mtime_ns: int | None = None,
    *,
    stored: bool = False,
) -> str | None:
    """Copy source to the new file target and return the MD5 of what was copied.

    A small file is read once and hashed in memory. With writers, a large one is read
    once, in chunks, each hashed on this thread while a writer thread writes it (hashlib
    and os.write release the GIL): one pass, hashing and writing at once, so the copy
    costs little more than the MD5 alone. Without writers, a large file is only copied,
    by the kernel, and None returned: the caller hashes it later, or knew its MD5.
    mtime_ns, if given, becomes the target's modification time. A stored source (in
    storage) is never opened through a link. Every byte is written, or OSError raised.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if stored else 0)
    if size < SMALL_FILE:
        return _copy_small(source, target, size, progress, mtime_ns, flags)
    md5 = _copy_hashing(source, target, progress, writers, flags) if writers is not None else None
    if md5 is None:
        _copy_kernel(source, target, progress, count=True, flags=flags)
    if mtime_ns is not None:
        os.utime(target, ns=(mtime_ns, mtime_ns))
    return md5


def _open(source: str | Path, flags: int) -> FileIO:
    return FileIO(os.open(source, flags), "rb", closefd=True)


def _copy_hashing(
    source: str | Path, target: Path | str, progress: Counter, writers: Executor, flags: int
) -> str:
    """Read source once into two alternating buffers: while a writer thread writes one
    chunk to target, this thread hashes it and reads the next into the other buffer."""
    digest = hashlib.md5(usedforsecurity=False)
    buffers = (bytearray(CHUNK_SIZE), bytearray(CHUNK_SIZE))
    pending: Future[None] | None = None
    with _open(source, flags) as src, open(target, "xb", buffering=0) as dst:
        fd = dst.fileno()
        try:
            turn = 0
            # The buffer read into was last written two chunks ago: that write is done.
            while n := src.readinto(buffers[turn]):
                chunk = memoryview(buffers[turn])[:n]
                if pending is not None:
                    pending.result()  # chunks reach the file in order
                pending = writers.submit(write_all, fd, chunk)
                digest.update(chunk)
                progress.advance(bytes=n)  # may raise to cancel
                turn ^= 1
            if pending is not None:
                pending.result()
                pending = None
        finally:
            # Stopped by an error: the writer must be done with fd before it closes.
            if pending is not None and not pending.cancel():
                pending.exception()
    return digest.hexdigest()


def _copy_kernel(
    source: str | Path, target: Path | str, progress: Counter, *, count: bool, flags: int
) -> None:
    """Copy inside the kernel (copy_file_range), stopping if cancelled; count the bytes
    on progress if count, else leave that to whoever hashes the file. Where the kernel
    refuses (another filesystem), copy in chunks, each written whole."""
    with _open(source, flags) as src, open(target, "xb", buffering=0) as dst:
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
            write_all(outfd, view[:n])
            progress.advance(bytes=n if count else 0)


def _copy_small(
    source: str | Path, target: Path | str, size: int, progress: Counter, mtime_ns: int | None,
    flags: int,
) -> str:  # fmt: skip
    """Copy a small file with as few system calls as possible: one read, one write.

    Per-file overhead, not bytes, is what a tree of many small files costs.
    """
    fd = os.open(source, flags)
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
        write_all(fd, data)
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)
    progress.advance(bytes=len(data))
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
