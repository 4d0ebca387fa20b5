"""``crunch files`` and ``crunch download``: a dataset's stored files, listed or copied
here through the transfer engine, without claiming anything (state and attempts stay).

A download is parallel and resumable (files already here as a download left them are
kept) and checked: each file's MD5 against the run's records (.crunch/*_md5_checksums.json).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crunchclient import transfer
from crunchclient.exceptions import TransferError
from crunchclient.server.connection import Connection
from crunchclient.server.wire import DatasetInfo
from crunchclient.settings.bootstrap import storage_location
from crunchclient.transfer.backends.base import Entry, StorageBackend
from crunchclient.transfer.paths import work_folder
from crunchclient.transfer.progress import size_text
from crunchclient.worker.records import SETUP_CHECKSUMS, UPLOAD_CHECKSUMS, record_path

logger = logging.getLogger(__name__)

SETUP_RECORD = record_path(SETUP_CHECKSUMS)
UPLOAD_RECORD = record_path(UPLOAD_CHECKSUMS)


def listing(storage: Any, prefix: str) -> list[Entry]:
    with transfer.open_backend(storage, 4) as backend:
        return sorted(backend.list(prefix), key=lambda entry: entry.rel)


def files(connection: Connection, storage: Any, slug: str) -> str:
    """The stored files of a dataset with their sizes, and their total."""
    prefix = connection.dataset(slug).folder
    entries = listing(storage, prefix)
    if not entries:
        return f"No files in {prefix!r} of {storage_location(storage)}."
    total = sum(entry.size or 0 for entry in entries)
    lines = [f"{size_text(entry.size or 0):>10}  {entry.rel}" for entry in entries]
    lines.append(f"{len(entries)} file(s), {size_text(total)} in {prefix!r}.")
    return "\n".join(lines)


def read_record(storage: Any, name: str) -> dict[str, str]:
    """A .crunch/*_md5_checksums.json record from storage; {} if it is not there."""
    try:
        with storage.open(name, "rb") as handle:
            value = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Downloaded:
    dataset: str
    destination: Path
    files: int
    skipped: int

    def summary(self) -> str:
        left = f" ({self.skipped} of Setup's left out)" if self.skipped else ""
        return (
            f"Dataset {self.dataset!r}: {self.files} file(s) in {str(self.destination)!r}{left}, "
            "checksums verified."
        )


def backend_for(storage: Any, keep: set[str] | None) -> type[StorageBackend]:
    """The storage's backend class; listing only the files of keep unless that is None."""
    base = transfer.backend_class(storage)
    if keep is None:
        return base

    def list_kept(self: StorageBackend, prefix: str, *, tidy: bool = False) -> list[Entry]:
        return [entry for entry in base.list(self, prefix, tidy=tidy) if entry.rel in keep]

    return type(f"Only{base.__name__}", (base,), {"list": list_kept})


def download_one(
    storage: Any, dataset: DatasetInfo, destination: Path, *, outputs_only: bool = False,
    jobs: int = 8, quiet: bool = True,
) -> Downloaded:  # fmt: skip
    """Copy a dataset's stored files into destination; verify them against its records."""
    prefix = dataset.folder
    setup = read_record(storage, f"{prefix}/{SETUP_RECORD}")
    uploaded = read_record(storage, f"{prefix}/{UPLOAD_RECORD}")
    keep: set[str] | None = None
    skipped = 0
    if outputs_only:
        # Setup's files, unless the workflow changed them (the upload record says how).
        inputs = {rel for rel, md5 in setup.items() if uploaded.get(rel, md5) == md5}
        entries = listing(storage, prefix)
        keep = {entry.rel for entry in entries if entry.rel not in inputs}
        skipped = len(entries) - len(keep)
    with backend_for(storage, keep)(storage, jobs) as backend:
        checksums = transfer.download_tree(backend, prefix, destination, jobs=jobs, quiet=quiet)
    expected = {**setup, **uploaded}
    for rel, md5 in checksums.items():
        want = expected.get(rel)
        if want is not None and want != md5:
            raise TransferError(
                f"{rel!r} of dataset {dataset.slug!r} has the MD5 {md5} here but {want} in "
                f"its record: the stored file changed since its run; download it again."
            )
    return Downloaded(
        dataset=dataset.slug, destination=destination, files=len(checksums),
        skipped=skipped,
    )  # fmt: skip


def select(
    connection: Connection, slugs: list[str], *, project: str | None, state: str | None
) -> list[DatasetInfo]:
    """The datasets named, or those of project (in state)."""
    if slugs:
        return [connection.dataset(slug) for slug in slugs]
    assert project
    connection.project_detail(project)
    return [DatasetInfo.from_wire(row) for row in connection.datasets(project=project, state=state)]


def download(  # noqa: PLR0913 (keyword-only: the command's options)
    connection: Connection, storage: Any, slugs: list[str], *, project: str | None = None,
    state: str | None = None, dest: Path = Path("."), outputs_only: bool = False,
    jobs: int = 8, quiet: bool = True,
) -> list[Downloaded]:  # fmt: skip
    """Download each dataset into dest/<project>/<dataset>/; claims nothing."""
    done = []
    for dataset in select(connection, slugs, project=project, state=state):
        slug = dataset.slug
        target = work_folder(dest.expanduser(), slug.partition(":")[0], slug)
        done.append(
            download_one(
                storage, dataset, target, outputs_only=outputs_only, jobs=jobs, quiet=quiet
            )
        )
    return done
