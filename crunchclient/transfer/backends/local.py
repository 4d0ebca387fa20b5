"""Storage on this machine's disk (FileSystemStorage, or any storage with a path()):
copy as the operating system does, never through a link.

A dataset's stored folder may hold links a workflow, a user or an attacker put there
(``leak -> ~/.ssh/id_rsa``, ``sibling -> ../other-dataset``). None is followed: listing
skips them, a stored file is opened with O_NOFOLLOW, and an upload refuses to create
files in a folder that is a link, so nothing outside the dataset's folder is read or
written. The dataset's folder itself must be where its name says, with no link on the way.
"""

from __future__ import annotations

import os
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from crunchclient.exceptions import UnsafePathError
from crunchclient.transfer.backends.base import Entry, StorageBackend
from crunchclient.transfer.copies import SMALL_FILE, copy_file
from crunchclient.transfer.hashing import md5_file
from crunchclient.transfer.paths import walk, write_then_rename

if TYPE_CHECKING:
    from django.core.files.storage import Storage

    from crunchclient.transfer.progress import Progress


class LocalBackend(StorageBackend):
    """Files copied by the kernel, listed by one walk, stored through their paths."""

    is_local = True

    def __init__(self, storage: Storage, jobs: int) -> None:
        super().__init__(storage, jobs)
        # Each upload hashing a file hands its chunks to one of these to be written.
        self.writers = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="crunch-write")
        self.listing: dict[str, Entry] = {}

    @classmethod
    def supports(cls, storage: Storage) -> bool:
        """Django's contract: a storage whose files open() can read implements path()."""
        try:
            storage.path("")
        except NotImplementedError:
            return False
        return True

    @property
    def workers(self) -> int:
        # More threads than cores only adds contention: hashing is the bottleneck.
        return min(self.jobs, os.cpu_count() or 1)

    def close(self) -> None:
        self.writers.shutdown(cancel_futures=True)

    def list(self, prefix: str, *, tidy: bool = False) -> list[Entry]:
        self._resolve(prefix)
        entries: list[Entry] = []
        for rel, item in walk(self.base, storage=True, clean=tidy):
            info = item.stat(follow_symlinks=False)
            entries.append(Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns))
        return entries

    def _resolve(self, prefix: str) -> None:
        # Resolve the prefix once: storage.path() per file costs more than the copy of
        # a small file.
        self.prefix = prefix.strip("/")
        self.base = str(self.storage.path(self.prefix))
        self.root = os.path.realpath(self.storage.path(""))
        expected = os.path.join(self.root, *self.prefix.split("/")) if self.prefix else self.root
        if os.path.realpath(self.base) != expected:
            raise UnsafePathError(
                f"Refusing the folder {self.prefix!r} in storage: a link in its path leads "
                f"to {os.path.realpath(self.base)!r}; links in storage are never followed."
            )
        self.folders: set[str] = set()
        self.token = secrets.token_hex(4)
        mode = getattr(self.storage, "file_permissions_mode", None)
        umask = os.umask(0o022)
        os.umask(umask)
        # A new file gets 0o666 & ~umask: chmod only when that is not the storage's mode.
        self.chmod = mode if mode is not None and mode != 0o666 & ~umask else None

    def prepare(self, prefix: str) -> None:
        # One walk of the stored folder instead of a stat per file to upload; it removes
        # what a killed upload left half-written.
        self.listing = {entry.rel: entry for entry in self.list(prefix, tidy=True)}

    def _target(self, name: str) -> str:
        if self.prefix and name.startswith(f"{self.prefix}/"):
            return os.path.join(self.base, name[len(self.prefix) + 1 :])
        return str(self.storage.path(name))

    def stored(self, name: str, rel: str) -> Entry | None:
        if self.prefix and name.startswith(f"{self.prefix}/"):
            return self.listing.get(rel)
        try:
            info = os.lstat(self._target(name))
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None  # a link is replaced, not followed
        return Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns)

    def stored_md5(self, name: str, entry: Entry) -> str | None:
        return md5_file(self._target(name))

    def source(self, name: str) -> str | None:
        return self._target(name)

    def download(self, name: str, entry: Entry, partial: str, progress: Progress) -> str | None:
        size = entry.size if entry.size is not None else SMALL_FILE
        # Large files are hashed later, from the copy: see hashing.Checksums.
        source = self._target(name)
        return copy_file(source, partial, size, progress, None, entry.mtime_ns, stored=True)

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        # Written through the path, so the stored file keeps its name instead of
        # FileSystemStorage's renamed copy ("a_x7Kq2.txt") beside the old one.
        target = self._target(name)
        self._make_folder(os.path.dirname(target), name)

        def write(partial: str) -> str | None:
            # A file hashed already is only copied (by the kernel); any other is hashed
            # in the one pass that copies it.
            copied = copy_file(local, partial, size, progress, None if md5 else self.writers)
            if self.chmod is not None:
                os.chmod(partial, self.chmod)
            return copied

        copied = write_then_rename(target, self.token, write)
        result = md5 or copied
        assert result is not None  # copy_file hashes whenever it is given writers
        return result

    def _make_folder(self, folder: str, name: str) -> None:
        """Make folder, each level below the dataset's folder a real folder: never one a
        link stands in for, so an upload cannot write through ``leak -> /elsewhere`` or
        ``sibling -> ../other``. (The dataset's folder was checked by _resolve().)"""
        if folder in self.folders:
            return
        if folder == self.base or not folder.startswith(self.base + os.sep):
            os.makedirs(folder, exist_ok=True)
        else:
            self._make_folder(os.path.dirname(folder), name)
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    raise UnsafePathError(
                        f"Refusing to upload {name!r}: {folder!r} in storage is a link or a "
                        "file, not a folder; links in storage are never followed: remove it."
                    ) from None
        self.folders.add(folder)
