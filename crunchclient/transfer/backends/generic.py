"""Any Django storage, through its public API only: the portable, slow way."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from django.core.files import File

from crunchclient.exceptions import TransferError
from crunchclient.transfer.backends.base import Entry, StorageBackend, keep_mtime
from crunchclient.transfer.hashing import md5_file, md5_stream
from crunchclient.transfer.paths import join

if TYPE_CHECKING:
    from crunchclient.transfer.progress import Progress


class GenericBackend(StorageBackend):
    """listdir(), open(), exists(), save(): works with every storage."""

    def list(self, prefix: str, *, tidy: bool = False) -> list[Entry]:
        entries: list[Entry] = []
        base = prefix.strip("/")
        stack = [base]
        while stack:
            current = stack.pop()
            directories, files = self.storage.listdir(current)
            for name in directories:
                stack.append(join(current, name))
            for name in files:
                full = join(current, name)
                entries.append(Entry(rel=full[len(base) + 1 :] if base else full))
        return entries

    def stored(self, name: str, rel: str) -> Entry | None:
        if not self.storage.exists(name):
            return None
        return Entry(rel=rel, size=self.storage.size(name))

    def stored_md5(self, name: str, entry: Entry) -> str | None:
        with self.storage.open(name, "rb") as source:
            return md5_stream(source)[1]

    def download(self, name: str, entry: Entry, partial: str, progress: Progress) -> str | None:
        with self.storage.open(name, "rb") as source, open(partial, "xb") as target:
            _size, md5 = md5_stream(source, target, progress)
        keep_mtime(partial, entry)
        return md5

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
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
