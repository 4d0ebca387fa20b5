"""Download: every file under a storage prefix into a working directory, resumable.

A file that is already in place, as a download left it or with the stored MD5, is not
moved again; the files are in place before all their MD5s are known (see
hashing.Checksums).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from crunchclient.exceptions import TransferError
from crunchclient.transfer.backends import StorageBackend, open_backend
from crunchclient.transfer.backends.base import Entry
from crunchclient.transfer.hashing import Checksums, Copy, fingerprint, fingerprint_of, md5_file
from crunchclient.transfer.parallel import run_parallel
from crunchclient.transfer.paths import (
    join,
    listing,
    prepare_folder,
    safe_relative,
    write_then_rename,
)
from crunchclient.transfer.progress import Progress

if TYPE_CHECKING:
    from typing import Unpack

    from django.core.files.storage import Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Fetched:
    """What a download did, file by file, so a caller's one line can count what it
    shows (Setup leaves out the .crunch/ records): {path: bytes} copied, paths kept."""

    copied: dict[str, int]
    kept: tuple[str, ...]
    seconds: float


class FetchOptions(TypedDict, total=False):
    """fetch_tree()'s keyword arguments."""

    jobs: int
    known: Mapping[str, str] | None
    only: set[str] | None
    quiet: bool
    tidy: bool


def fetch_tree(
    storage: Storage | StorageBackend,
    prefix: str,
    destination: Path,
    **options: Unpack[FetchOptions],
) -> Checksums:
    """Copy every file under prefix into destination; return their checksums.

    The files are in place on return; the MD5s of large files the kernel copied may
    still be computing (Checksums.result() waits for them). A local file with the
    stored file's size and modification time (which a download gives its copy) is
    kept, with its MD5 from known, else hashed again; without that, a local file with
    the stored file's MD5 (S3's ETag) is kept. storage is a Django storage, or a
    StorageBackend its owner keeps open. With tidy (a run's Setup), what a killed upload
    left half-written in the stored folder is removed.
    """
    return fetch_counted(storage, prefix, destination, **options)[0]


def fetch_counted(
    storage: Storage | StorageBackend,
    prefix: str,
    destination: Path,
    *,
    jobs: int = 8,
    known: Mapping[str, str] | None = None,
    only: set[str] | None = None,
    quiet: bool = False,
    tidy: bool = False,
) -> tuple[Checksums, Fetched]:
    """fetch_tree(), and what it copied and kept; with only, just those files (paths
    relative to prefix)."""
    with open_backend(storage, jobs) as backend:
        return _download(
            backend, prefix, destination, jobs=jobs, known=known or {}, only=only, quiet=quiet,
            tidy=tidy,
        )  # fmt: skip


def download_tree(
    storage: Storage | StorageBackend,
    prefix: str,
    destination: Path,
    **options: Unpack[FetchOptions],
) -> dict[str, str]:
    """fetch_tree(), then wait for the checksums: return {relative path: md5}."""
    return fetch_tree(storage, prefix, destination, **options).result()


def _download(
    backend: StorageBackend,
    prefix: str,
    destination: Path,
    *,
    jobs: int,
    known: Mapping[str, str],
    only: set[str] | None,
    quiet: bool,
    tidy: bool = False,
) -> tuple[Checksums, Fetched]:
    entries = [e for e in backend.list(prefix, tidy=tidy) if only is None or e.rel in only]
    if not backend.is_local:  # a local listing builds its names itself
        entries = unambiguous(prefix, entries, [_checked(entry) for entry in entries])
    destination.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(destination))
    checksums: dict[str, str] = {}
    copies: list[Copy] = []  # kernel copies, hashed in the background
    to_fetch: list[tuple[Entry, int]] = []
    in_place: list[str] = []  # kept as they are
    present = _present(root, entries)
    for entry in entries:
        info = present.get(entry.rel)
        kept = None
        if info is not None:
            kept = _reusable(root, entry, info, known.get(entry.rel), backend, prefix)
        if kept is None:
            to_fetch.append((entry, entry.size or 0))
            continue
        in_place.append(entry.rel)
        if isinstance(kept, Copy):
            copies.append(kept)
        else:
            checksums[entry.rel] = kept

    to_fetch.sort(key=lambda item: -item[1])  # large first: no lone big file at the end
    total_bytes = sum(size for _entry, size in to_fetch)
    lock = threading.Lock()
    token = secrets.token_hex(4)
    started = time.monotonic()

    with Progress(
        "download", total_bytes=total_bytes, total_files=len(to_fetch), quiet=quiet
    ) as progress:
        base = str(root)

        def fetch(batch: list[Entry]) -> None:
            items = [(join(prefix, entry.rel), entry) for entry in batch]
            backend.download_many(items, place, progress)

        def place(entry: Entry, write: Callable[[str], str | None]) -> None:
            name = join(prefix, entry.rel)
            target = os.path.join(base, entry.rel)
            md5 = write_then_rename(target, token, write)
            if md5 is None:  # copied by the kernel: hashed later, from the copy
                source = backend.source(name)
                assert source is not None  # only a backend with paths hashes later
                copy = Copy(
                    rel=entry.rel, local=target, source=source, fingerprint=fingerprint(target)
                )
                with lock:
                    copies.append(copy)
            else:
                with lock:
                    checksums[entry.rel] = md5
            progress.advance(files=1)

        run_parallel(fetch, to_fetch, backend.workers, progress, local=backend.is_local)

    fetched = Fetched(
        copied={entry.rel: size for entry, size in to_fetch}, kept=tuple(in_place),
        seconds=time.monotonic() - started,
    )  # fmt: skip
    # The caller's line says what the download did (a run's Setup line, crunch download's).
    logger.debug(
        "Downloaded %d files (%d bytes), kept %d, in %.2fs",
        len(to_fetch), total_bytes, len(in_place), fetched.seconds,
    )  # fmt: skip
    return Checksums(checksums, copies, jobs=jobs), fetched


def _present(root: Path, entries: list[Entry]) -> dict[str, os.stat_result]:
    """What is already in the entries' folders (a resumed run): {rel: lstat}.

    Creates the folders once, refusing any that a link would take out of root, and
    lists each folder that existed before once; partial files of a killed run go.
    """
    present: dict[str, os.stat_result] = {}
    made: dict[str, bool] = {"": True}
    for parent in sorted({entry.rel.rpartition("/")[0] for entry in entries}):
        if prepare_folder(root, parent, made):
            for item in listing(os.path.join(root, parent), clean=True):
                if item.is_file(follow_symlinks=False):
                    rel = f"{parent}/{item.name}" if parent else item.name
                    present[rel] = item.stat(follow_symlinks=False)
    return present


def unambiguous(prefix: str, listed: list[Entry], checked: list[Entry]) -> list[Entry]:
    """checked (the listed entries with clean names), or TransferError naming the keys
    when two would be one local file (``a//b.txt``, ``a/./b.txt``, ``a/b.txt``) or a
    file would be another's folder (``sub`` beside ``sub/x.txt``)."""
    keys: dict[str, list[str]] = {}
    for raw, entry in zip(listed, checked, strict=True):
        keys.setdefault(entry.rel, []).append(join(prefix, raw.rel))
    for rel, names in keys.items():
        if len(names) > 1:
            raise TransferError(
                f"Refusing the keys {', '.join(repr(n) for n in sorted(names))} in storage: "
                f"they are all the file {rel!r}; keep one of them."
            )
    for rel, names in keys.items():
        parent = rel.rpartition("/")[0]
        while parent:
            if parent in keys:
                raise TransferError(
                    f"Refusing the key {keys[parent][0]!r} in storage: it is a file and also "
                    f"the folder of {names[0]!r}; rename one of them."
                )
            parent = parent.rpartition("/")[0]
    return checked


def _checked(entry: Entry) -> Entry:
    """The entry with its name made a clean relative path, or UnsafePathError."""
    rel = safe_relative(entry.rel)
    return entry if rel == entry.rel else entry._replace(rel=rel)


def _reusable(
    root: Path,
    entry: Entry,
    info: os.stat_result,
    recorded: str | None,
    backend: StorageBackend,
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
        source = backend.source(join(prefix, entry.rel))
        if source is not None:
            local = os.path.join(root, entry.rel)
            return Copy(rel=entry.rel, local=local, source=source, fingerprint=fingerprint_of(info))
        if entry.md5 is None:  # nothing to compare with: its bytes are the stored ones
            return md5_file(root / entry.rel)
    expected = recorded or (entry.md5 if backend.lists_md5 else None)
    if expected is None:
        return None
    return expected if md5_file(root / entry.rel) == expected else None
