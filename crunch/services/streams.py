"""The bytes of files through the server, for storages that cannot sign links.

Reads stream from the stored file (``FileResponse``: sendfile where the WSGI server
offers it); writes copy the request body in chunks into a half-written file that is
renamed once complete, so memory stays flat and no partial file stands under its name.
Many small files travel as one tar stream each way (``tar_of``, ``untar``): one request
instead of one per file. Links are never followed, on either side of a name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File

from crunch.constants import PARTIAL_MARK
from crunch.services.transfers import Grant, Refused, clean_file_path

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Incomplete(Exception):
    """The request's body ended before the size it announced (400): nothing was stored."""


@dataclass(frozen=True)
class Opened:
    """A stored file open for reading: its handle, size and, on local disk, path."""

    handle: IO[bytes]
    size: int
    path: str | None


def open_stored(grant: Grant, path: str) -> Opened | None:
    """The dataset's file ``path`` for reading, or None when absent or reached by a link."""
    place = grant.place
    if place.real_base is None:
        name = grant.name(path)
        try:
            if not place.storage.exists(name):
                return None
            return Opened(place.storage.open(name, "rb"), place.storage.size(name), None)
        except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
            return None
    local = os.path.join(place.real_base, path)
    if os.path.realpath(local) != local:
        return None  # a link on the way: never followed
    try:
        descriptor = os.open(local, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None
    handle = os.fdopen(descriptor, "rb")
    size = os.fstat(descriptor).st_size
    return Opened(handle, size, local)


def write_stored(
    grant: Grant, path: str, source: IO[bytes], length: int,
    pending: list[tuple[str, str]] | None = None,
) -> None:  # fmt: skip
    """Store ``length`` bytes read from ``source`` as the dataset's file ``path``,
    replacing it; Incomplete (and nothing stored) if the body is shorter. With
    ``pending`` (local disk), the written file stays under its partial name and
    (partial, final) is added there, for ``commit()``."""
    place = grant.place
    if place.real_base is None:
        name = grant.name(path)
        body: Any = _Exact(source, length)
        if place.storage.exists(name):
            place.storage.delete(name)
        saved = place.storage.save(name, File(body, name=os.path.basename(name)))
        body.check()
        if saved != name:
            raise Refused(f"The storage saved {path!r} under another name: set it to overwrite.")
        return
    folder = _folder_for(place.real_base, path)
    final = os.path.join(folder, os.path.basename(path))
    partial = f"{final}{PARTIAL_MARK}{secrets.token_hex(4)}"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as target:
            left = length
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    raise Incomplete(f"The body of {path!r} ended {left} bytes early.")
                target.write(chunk)
                left -= len(chunk)
        if os.path.isdir(final) and not os.path.islink(final):
            raise Refused(f"Refusing to write {path!r}: it is a folder in storage.")
        if pending is None:
            os.replace(partial, final)
        else:
            pending.append((partial, final))
    except BaseException:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise


def _folder_for(root: str, path: str) -> str:
    """The folder of ``path`` under root, made where missing; Refused when a link or a
    file stands where a folder must be."""
    folder = root
    os.makedirs(root, exist_ok=True)
    for part in path.split("/")[:-1]:
        folder = os.path.join(folder, part)
        try:
            os.mkdir(folder)
        except FileExistsError:
            if os.path.islink(folder) or not os.path.isdir(folder):
                raise Refused(
                    f"Refusing to write {path!r}: {part!r} in storage is a link or a file."
                ) from None
    return folder


class _Exact:
    """A body read as a file, at most ``length`` bytes; ``check()`` that all came.
    Read once, front to back: storages that ask are told it cannot seek."""

    closed = False

    def __init__(self, source: IO[bytes], length: int) -> None:
        self.source = source
        self.left = length

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.source.read(size) if size else b""
        self.left -= len(data)
        return data

    def check(self) -> None:
        if self.left:
            raise Incomplete(f"The body ended {self.left} bytes early.")


def md5_of(grant: Grant, path: str) -> str | None:
    """The stored file's MD5, read from storage; None when absent (or reached by a link)."""
    opened = open_stored(grant, path)
    if opened is None:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with opened.handle:
        while chunk := opened.handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tar_of(grant: Grant, paths: list[str]) -> Iterator[bytes]:
    """The files ``paths`` as one tar stream, a file's bytes read in chunks; a file that
    is absent (or a link) is left out, and the client names what it misses."""
    for path in paths:
        opened = open_stored(grant, path)
        if opened is None:
            continue
        with opened.handle:
            info = tarfile.TarInfo(path)
            info.size = opened.size
            info.mode = 0o644
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            left = opened.size
            while left > 0:
                chunk = opened.handle.read(min(CHUNK, left))
                if not chunk:  # shrank while read: pad, the client's MD5 will differ
                    chunk = bytes(min(CHUNK, left))
                yield chunk
                left -= len(chunk)
            yield bytes(-opened.size % BLOCK)
    yield bytes(2 * BLOCK)


def untar(grant: Grant, source: IO[bytes], limit: int) -> list[tuple[str, int]]:
    """Store each regular file of the tar stream ``source`` (``limit`` bytes at most) as
    the dataset's file of its name; return [(path, size)]. Refused for a member that is
    not a regular file or whose name is not clean. On local disk nothing is stored unless
    the whole stream is (other storages keep the files before the refused one)."""
    stored: list[tuple[str, int]] = []
    body: Any = _Exact(source, limit)
    pending: list[tuple[str, str]] | None = [] if grant.place.real_base is not None else None
    try:
        with tarfile.open(fileobj=body, mode="r|", bufsize=CHUNK) as archive:
            for member in archive:
                if not member.isreg():
                    raise Refused(f"Refusing {member.name[:200]!r}: not a regular file.")
                path = clean_file_path(member.name)
                data = archive.extractfile(member)
                assert data is not None  # a regular file
                write_stored(grant, path, data, member.size, pending)
                stored.append((path, member.size))
                if len(stored) > 10_000:
                    raise Refused("Send at most 10,000 files in one bundle.")
        for partial, final in pending or ():  # all or nothing, on local disk
            os.replace(partial, final)
    except tarfile.TarError as exc:
        raise Refused(f"The bundle is not a tar stream: {exc}.") from None
    finally:
        for partial, _final in pending or ():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
    return stored
