"""The contract of a storage backend: how one kind of Django storage lists, reads and
writes files, and what it is good at.

Flows (download, upload) ask a backend only through this class and its flags, so a
faster path for another storage is one subclass and one entry in BACKENDS.
"""

from __future__ import annotations

import builtins
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    from django.core.files.storage import Storage

    from crunchclient.transfer.progress import Progress


class Entry(NamedTuple):
    """A file in storage, relative to the transfer's prefix.

    A named tuple: a listing makes one per stored file, at a third of a frozen
    dataclass's cost, which a second setup of many small files notices.
    """

    rel: str
    size: int | None = None
    mtime_ns: int | None = None
    md5: str | None = None  # the store's own checksum, when it has one (S3 ETag)
    etag: str | None = None  # S3's ETag as stored, also a multipart one ("<md5>-<parts>")


class Outgoing(NamedTuple):
    """A local file to store as ``name`` (its MD5 if known: it saves hashing it again)."""

    name: str
    local: str
    size: int
    md5: str | None


Place = Callable[[Entry, Callable[[str], "str | None"]], None]
"""How a download flow puts one file in place: ``place(entry, write)`` calls
``write(partial)`` to fill a new file, then renames it (paths.write_then_rename)."""


class StorageBackend(ABC):
    """Lists, reads and writes the files of one storage for the transfer flows.

    Names are storage names (prefix/rel); entries come from list() and stored().
    Use it as a context manager, or call close(), to release threads and connections.
    """

    is_local: ClassVar[bool] = False
    """Files are on this machine's disk: list() builds clean names itself (no path
    check needed), source() gives their paths, and small copies may not need threads."""

    lists_md5: ClassVar[bool] = False
    """list() gives each file's MD5 (Entry.md5): a local file can be compared with the
    stored one without reading the stored one."""

    def __init__(self, storage: Storage | Any, jobs: int) -> None:
        self.storage = storage
        self.jobs = max(1, jobs)

    @classmethod
    def supports(cls, storage: Storage) -> bool:
        """Whether this backend can serve storage (the registry asks before using it)."""
        return True

    @property
    def workers(self) -> int:
        """How many files this backend wants moved at once: every job it is given."""
        return self.jobs

    def close(self) -> None:
        """Release what the backend holds (threads, connections)."""
        return None

    def __enter__(self) -> StorageBackend:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def prepare(self, prefix: str) -> None:
        """Learn what is stored under prefix, if one listing is cheaper than many lookups
        (called before stored())."""
        return None

    @abstractmethod
    def list(self, prefix: str, *, tidy: bool = False) -> list[Entry]:
        """Every file stored under prefix; with tidy, also remove what a killed transfer
        left half-written there (see paths.PARTIAL_MARK), where a storage can have such."""

    @abstractmethod
    def stored(self, name: str, rel: str) -> Entry | None:
        """The stored file name (rel under the prepared prefix), or None if absent."""

    @abstractmethod
    def stored_md5(self, name: str, entry: Entry) -> str | None:
        """The MD5 of the stored file, or None if the storage cannot tell."""

    def matches(self, name: str, stored: Entry, local: str, md5: str) -> bool:
        """Whether the stored file holds the same bytes as local, whose MD5 is md5."""
        return self.stored_md5(name, stored) == md5

    def source(self, name: str) -> str | None:
        """The stored file's path on this machine, if the storage has one."""
        return None

    @abstractmethod
    def download(self, name: str, entry: Entry, partial: str, progress: Progress) -> str | None:
        """Copy the stored file to the new file partial, with the stored mtime; return
        its MD5, or None if it is to be hashed later, from the copy (only where
        source() gives a path: see hashing.Checksums)."""

    @abstractmethod
    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        """Store local (size bytes) as name, replacing any stored file; return its MD5
        (md5 if given, which saves hashing it again)."""

    def download_many(
        self, items: Sequence[tuple[str, Entry]], place: Place, progress: Progress
    ) -> None:
        """Download a batch of (name, entry): ``place`` each with a writer. One at a time
        here; a backend that moves many files in one request does it there."""
        for name, entry in items:
            place(entry, functools.partial(self.download, name, entry, progress=progress))

    def upload_many(self, items: Sequence[Outgoing], progress: Progress) -> builtins.list[str]:
        """Store a batch of files; their MD5s in order. One at a time here (see
        download_many)."""
        return [self.upload(i.name, i.local, i.size, i.md5, progress) for i in items]


def keep_mtime(path: str, entry: Entry) -> None:
    """Give a downloaded file the stored file's mtime: a later run knows it is untouched."""
    if entry.mtime_ns is not None:
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
