"""``crunch files`` and ``crunch download``: a dataset's stored files, listed or copied
here through the transfer engine, without claiming anything (state and attempts stay).

A download is parallel and resumable (files already here as a download left them are
kept) and checked: each file's MD5 against the run's records (.crunch/*_md5_checksums.json).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crunchclient import transfer
from crunchclient.exceptions import TransferError
from crunchclient.server.connection import Connection
from crunchclient.server.files import ServerBackend
from crunchclient.server.wire import DatasetInfo
from crunchclient.settings import bootstrap
from crunchclient.settings.bootstrap import storage_location
from crunchclient.settings.config import transfer_mode
from crunchclient.transfer.backends.base import Entry
from crunchclient.transfer.paths import work_folder
from crunchclient.transfer.progress import size_text
from crunchclient.worker.records import RECORDS, SETUP_CHECKSUMS, UPLOAD_CHECKSUMS

logger = logging.getLogger(__name__)

Source = Callable[[DatasetInfo], Any]
"""Where a dataset's files are read from: a Django storage (direct) or a ServerBackend."""


def source_of(opts: dict[str, Any], connection: Connection) -> Source:
    """The source of --transfer (see ``config.transfer_mode``): the storage of the
    storage settings, or the server, with only the URL and token."""
    if transfer_mode(opts) == "direct":
        storage = bootstrap.get_storage()
        return lambda _dataset: storage
    jobs = opts.get("jobs") or 4
    return lambda dataset: ServerBackend(connection, dataset.slug, dataset.folder, jobs=jobs)


def listing(storage: Any, prefix: str) -> list[Entry]:
    with transfer.open_backend(storage, 4) as backend:
        return sorted(backend.list(prefix), key=lambda entry: entry.rel)


def files(connection: Connection, source: Source, slug: str) -> str:
    """The stored files of a dataset with their sizes, and their total."""
    dataset = connection.dataset(slug)
    prefix = dataset.folder
    storage = source(dataset)
    entries = listing(storage, prefix)
    if not entries:
        return f"No files in {prefix!r} of {storage_location(storage)}."
    total = sum(entry.size or 0 for entry in entries)
    lines = [f"{size_text(entry.size or 0):>10}  {entry.rel}" for entry in entries]
    lines.append(f"{len(entries)} file(s), {size_text(total)} in {prefix!r}.")
    return "\n".join(lines)


def read_records(storage: Any, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """The dataset's Setup and Upload checksum records from storage; {} for one not there."""
    folder = f"{prefix}/{RECORDS}"
    with tempfile.TemporaryDirectory(prefix="crunch-records-") as copy:
        transfer.download_tree(
            storage, folder, Path(copy), only={SETUP_CHECKSUMS, UPLOAD_CHECKSUMS}, jobs=2,
            quiet=True,
        )  # fmt: skip
        return tuple(  # type: ignore[return-value]
            read_json(Path(copy) / name) for name in (SETUP_CHECKSUMS, UPLOAD_CHECKSUMS)
        )


def read_json(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
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


def download_one(
    storage: Any, dataset: DatasetInfo, destination: Path, *, outputs_only: bool = False,
    jobs: int = 8, quiet: bool = True,
) -> Downloaded:  # fmt: skip
    """Copy a dataset's stored files into destination; verify them against its records."""
    prefix = dataset.folder
    setup, uploaded = read_records(storage, prefix)
    keep: set[str] | None = None
    skipped = 0
    if outputs_only:
        # Setup's files, unless the workflow changed them (the upload record says how).
        inputs = {rel for rel, md5 in setup.items() if uploaded.get(rel, md5) == md5}
        entries = listing(storage, prefix)
        keep = {entry.rel for entry in entries if entry.rel not in inputs}
        skipped = len(entries) - len(keep)
    checksums = transfer.download_tree(
        storage, prefix, destination, only=keep, jobs=jobs, quiet=quiet
    )
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
    connection: Connection, source: Source, slugs: list[str], *, project: str | None = None,
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
                source(dataset), dataset, target, outputs_only=outputs_only, jobs=jobs, quiet=quiet
            )
        )
    return done
