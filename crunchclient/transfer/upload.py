"""Upload: new and modified files of a working directory into storage, resumable.

A stored file with the same MD5 is left alone; links that lead out of the directory
are not followed: a workflow's link to shared reference data must not be copied up.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crunchclient.exceptions import TransferError
from crunchclient.transfer.backends import StorageBackend, open_backend
from crunchclient.transfer.backends.base import Entry, Outgoing
from crunchclient.transfer.hashing import Checksums, Digests, fingerprint_of, md5_file
from crunchclient.transfer.parallel import run_parallel
from crunchclient.transfer.paths import inside, join, safe_relative, walk_files
from crunchclient.transfer.progress import Progress

if TYPE_CHECKING:
    from django.core.files.storage import Storage

logger = logging.getLogger(__name__)

LATER = "later"
"""The MD5 of a pending file left alone: known to the caller once its hashing ends."""


@dataclass(frozen=True, kw_only=True)
class TransferResult:
    """What a transfer moved: files and bytes sent, files left alone, wall time; and how
    many of the files sent were hashed before (while the workflow ran)."""

    files: int
    bytes: int
    skipped: int
    seconds: float
    hashed_before: int = 0
    deferred: tuple[str, ...] = ()
    """Files of ``pending`` (see upload_tree) left alone: their MD5s are the caller's to add."""


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


def upload_files(
    storage: Storage | StorageBackend,
    prefix: str,
    directory: Path,
    paths: Iterable[str],
    *,
    jobs: int = 8,
    quiet: bool = False,
    checksums: Mapping[str, str] | None = None,
) -> TransferResult:
    """Send each path (relative to directory) to storage[prefix/path], replacing it.

    A stored file with the same MD5 is left alone. checksums (relative path -> md5,
    e.g. from checksum_tree) saves hashing again. storage is a Django storage, or a
    StorageBackend its owner keeps open.
    """
    root = Path(os.path.realpath(directory))
    rels: list[str] = []
    refused = 0
    for path in paths:
        rel = safe_relative(str(path).replace(os.sep, "/"))
        if not inside(root / rel, root):
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


def upload_tree(  # noqa: PLR0913 (keyword-only: what one upload needs)
    storage: Storage | StorageBackend,
    prefix: str,
    directory: Path,
    *,
    known: Mapping[str, str] | None = None,
    pending: Collection[str] = (),
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
    without being hashed; any other file is hashed while it is copied. A file of
    pending (a download's whose MD5 is still being computed, see hashing.Checksums) as
    the download left it is not read either, nor waited for: it is left out of the
    MD5s and named in the result's ``deferred``.
    """
    root = Path(os.path.realpath(directory))
    rels = [rel for rel in walk_files(root) if exclude is None or not exclude(rel)]
    return _send(
        storage, prefix, root, rels, jobs=jobs, quiet=quiet, hints={}, known=known or {},
        hashed=hashed, pending=pending,
    )  # fmt: skip


def upload_after_setup(  # noqa: PLR0913 (keyword-only: what one upload needs)
    storage: Storage | StorageBackend,
    prefix: str,
    directory: Path,
    setup: Checksums,
    *,
    record: Callable[[], Mapping[str, str]] | None = None,
    hashed: Digests | None = None,
    exclude: Callable[[str], bool] | None = None,
    jobs: int = 8,
    quiet: bool = False,
) -> tuple[Mapping[str, str], dict[str, str], TransferResult]:
    """upload_tree() of a run's folder, whose Setup downloaded the files of ``setup``.

    Their MD5s still being computed are not waited for before the workflow's files are
    sent: they are finished meanwhile, at normal priority (Checksums.hurry), and then
    awaited by ``record`` (which also writes their record; default setup.result()), but
    for a file the workflow changed before its MD5 was known: that MD5 is read from the
    stored file, so it is awaited before the upload replaces it.
    Return (Setup's MD5s, the MD5s of every file as uploaded, what moved).
    """
    setup.hurry()
    record = record or setup.result
    known = record() if setup.done() or setup.reads_storage() else setup.known
    after, result = upload_tree(
        storage, prefix, directory, known=known, pending=setup.pending, hashed=hashed,
        exclude=exclude, jobs=jobs, quiet=quiet,
    )  # fmt: skip
    recorded = record()
    after.update((rel, recorded[rel]) for rel in result.deferred)
    return recorded, dict(sorted(after.items())), result


class _Sent:
    """The tally of an upload, kept by many threads."""

    def __init__(self, skipped: int) -> None:
        self.lock = threading.Lock()
        self.checksums: dict[str, str] = {}
        self.deferred: list[str] = []
        self.files = self.bytes = self.early = 0
        self.skipped = skipped

    def add(self, rel: str, md5: str, size: int, *, sent: bool, early: bool) -> None:
        with self.lock:
            if md5 == LATER:
                self.deferred.append(rel)
            else:
                self.checksums[rel] = md5
            if sent:
                self.files += 1
                self.bytes += size
                self.early += early
            else:
                self.skipped += 1


def _send(  # noqa: PLR0913 (keyword-only: what one upload needs)
    storage: Storage | StorageBackend,
    prefix: str,
    root: Path,
    rels: list[str],
    *,
    jobs: int,
    quiet: bool,
    hints: Mapping[str, str],
    known: Mapping[str, str],
    hashed: Digests | None = None,
    pending: Collection[str] = (),
) -> tuple[dict[str, str], TransferResult]:
    """Upload rels (already checked to stay inside root); return their MD5s and a result."""
    started = time.monotonic()
    items: list[tuple[Entry, int]] = []
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
        items.append((Entry(rel=rel, size=info.st_size, mtime_ns=info.st_mtime_ns), info.st_size))
        if hashed and (earlier := hashed.get(rel)) is not None:
            if earlier[0] == fingerprint_of(info):
                hints[rel] = earlier[1]
                early.add(rel)
    # Large files first, so the last minutes are not one big file on one thread.
    items.sort(key=lambda item: -item[1])

    sent = _Sent(skipped)
    with open_backend(storage, jobs) as backend:
        if items:
            backend.prepare(prefix)
        total = sum(size for _e, size in items)
        with Progress("upload", total_bytes=total, total_files=len(items), quiet=quiet) as progress:

            def send(batch: list[Entry]) -> None:
                outgoing: list[tuple[Entry, Outgoing]] = []
                for entry in batch:
                    local = os.path.join(base, entry.rel)
                    name = join(prefix, entry.rel)
                    md5 = _unchanged(backend, name, entry, local, hints, known, pending=pending)
                    if md5 is not None:
                        progress.advance(bytes=entry.size or 0, files=1)
                        sent.add(entry.rel, md5, entry.size or 0, sent=False, early=False)
                    else:
                        outgoing.append(
                            (entry, Outgoing(name, local, entry.size or 0, hints.get(entry.rel)))
                        )
                if not outgoing:
                    return
                stored = backend.upload_many([item for _entry, item in outgoing], progress)
                for (entry, item), md5 in zip(outgoing, stored, strict=True):
                    progress.advance(files=1)
                    sent.add(entry.rel, md5, item.size, sent=True, early=entry.rel in early)

            run_parallel(send, items, backend.workers, progress, local=backend.is_local)

    result = TransferResult(
        files=sent.files, bytes=sent.bytes, skipped=sent.skipped,
        seconds=time.monotonic() - started, hashed_before=sent.early,
        deferred=tuple(sorted(sent.deferred)),
    )  # fmt: skip
    # The caller's line says what the upload did (a run's Upload line, crunch import's).
    logger.debug(
        "Uploaded %d files (%d bytes, %d hashed before), kept %d, in %.2fs",
        result.files, result.bytes, result.hashed_before, result.skipped, result.seconds,
    )  # fmt: skip
    return dict(sorted(sent.checksums.items())), result


def _unchanged(
    backend: StorageBackend, name: str, entry: Entry, local: str,
    hints: dict[str, str], known: Mapping[str, str], *, pending: Collection[str] = (),
) -> str | None:  # fmt: skip
    """The local file's MD5 when the stored file holds the same bytes (not to be sent),
    LATER for such a file of pending; None when it must be sent. A file as
    download_tree() left it is not read at all."""
    stored = backend.stored(name, entry.rel)
    if stored is None or stored.size != (entry.size or 0):
        return None
    if stored.mtime_ns == entry.mtime_ns:  # as download_tree() left it, with the stored mtime
        recorded = known.get(entry.rel)
        if recorded is not None:
            return recorded
        if entry.rel in pending:
            return LATER
    md5 = hints.get(entry.rel) or md5_file(local)
    if backend.matches(name, stored, local, md5):
        return md5
    hints[entry.rel] = md5  # hashed already: not again while it is sent
    return None
