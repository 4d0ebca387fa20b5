"""``crunch import``: many datasets registered at once, from folders already in storage,
from local folders copied up first, or from a CSV with typed attribute columns.

Registration goes through the bulk endpoint in batches; the server leaves a dataset it
has as it is, so re-running an import adds only what is new.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils.text import slugify

from crunchclient import transfer
from crunchclient.exceptions import ConfigurationError
from crunchclient.server.connection import Connection
from crunchclient.settings.bootstrap import storage_location
from crunchclient.terminal.entry import ATTRIBUTE_TYPES, typed_value

logger = logging.getLogger(__name__)

BATCH = 1000  # datasets per request (the server takes up to 5000)
PLAIN_COLUMNS = {"name", "base_file_path", "description", "details", "priority"}
COLUMN = re.compile(r"^(?P<key>[^:]+):(?P<type>[a-z-]+)$")

Entry = dict[str, Any]
"""One dataset as the bulk endpoint takes it: name, base_file_path, attributes..."""


@dataclass(frozen=True)
class Imported:
    created: int
    existing: int

    def summary(self) -> str:
        return f"{self.created} new, {self.existing} already registered."


def slug_of(project: str, name: str) -> str:
    """The slug the server gives a dataset named name (see crunch.services.registration)."""
    return f"{project}:{slugify(name) or 'unnamed'}"


# ---------------------------------------------------------------------------- sources


def from_storage(storage: Any, prefix: str) -> list[Entry]:
    """One dataset per folder directly under prefix, that folder as its base_file_path."""
    prefix = prefix.strip("/")
    try:
        folders, _files = storage.listdir(prefix)
    except FileNotFoundError:
        folders = []
    if not folders:
        raise ConfigurationError(
            f"No folders under {prefix!r} in {storage_location(storage)}: "
            "check --from-storage and the storage settings."
        )
    return [
        {"name": folder, "base_file_path": f"{prefix}/{folder}" if prefix else folder}
        for folder in sorted(folders)
    ]


def from_csv(path: Path) -> list[Entry]:
    """One dataset per row: name, optional base_file_path, description, details, priority,
    and one column per attribute named ``key:type`` (e.g. ``depth:float``)."""
    try:
        handle = path.expanduser().open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(
            f"CSV file {str(path)!r} cannot be read ({exc.strerror}): check --from-csv."
        ) from exc
    with handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if "name" not in columns:
            raise ConfigurationError(
                f"CSV file {str(path)!r} has no 'name' column: its header must start with name "
                "(then optional base_file_path, then key:type columns)."
            )
        typed = {column: attribute_column(column, path) for column in columns}
        entries = []
        for line, row in enumerate(reader, start=2):
            entries.append(csv_entry(row, typed, where=f"{path.name} line {line}"))
    return entries


def attribute_column(column: str, path: Path) -> tuple[str, str] | None:
    """(key, type) of an attribute column; None for a plain one; an error otherwise."""
    if column in PLAIN_COLUMNS:
        return None
    match = COLUMN.match(column.strip())
    if not match or match["type"] not in ATTRIBUTE_TYPES:
        raise ConfigurationError(
            f"CSV file {str(path)!r} has the column {column!r}: name attribute columns "
            f"key:type with a type among {', '.join(sorted(ATTRIBUTE_TYPES))} (e.g. depth:float)."
        )
    return match["key"].strip(), ATTRIBUTE_TYPES[match["type"]]


def csv_entry(
    row: dict[str, str], typed: dict[str, tuple[str, str] | None], *, where: str
) -> Entry:
    name = (row.get("name") or "").strip()
    if not name:
        raise ConfigurationError(f"{where}: the name is empty; give every dataset a name.")
    entry: Entry = {"name": name, "attributes": []}
    for column, cell in row.items():
        kind = typed.get(column)
        text = (cell or "").strip()
        if not text or column == "name":
            continue
        if kind is None:
            entry[column] = int(text) if column == "priority" else text
            continue
        key, server_kind = kind
        try:
            if server_kind == "lat-long":
                parts = re.split(r"[\s,;]+", text)
                if len(parts) != 2:
                    raise ConfigurationError(f"{text!r} is not 'LATITUDE LONGITUDE'.")
                value: Any = [typed_value("float", part) for part in parts]
            else:
                value = typed_value(server_kind, text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}, column {column!r}: {exc}") from None
        entry["attributes"].append({"key": key, "kind": server_kind, "value": value})
    return entry


def upload_folders(
    storage: Any, connection: Connection, project: str, folders: Sequence[Path], *,
    jobs: int = 8, quiet: bool = True,
) -> list[Entry]:  # fmt: skip
    """Copy each new local folder into storage under crunch/<project>/<name>; a folder
    whose dataset is registered already is left alone (its stored files may be outputs)."""
    registered = {d["slug"] for d in connection.datasets(project=project)}
    entries: list[Entry] = []
    for given in folders:
        folder = given.expanduser()
        if not folder.is_dir():
            raise ConfigurationError(f"{str(folder)!r} is not a folder: check --upload.")
        name = folder.resolve().name
        prefix = f"crunch/{project}/{name}"
        if slug_of(project, name) not in registered:
            transfer.upload_tree(storage, prefix, folder, jobs=jobs, quiet=quiet)
        entries.append({"name": name, "base_file_path": prefix})
    return entries


# ---------------------------------------------------------------------------- registering


def register(
    connection: Connection, project: str, entries: Sequence[Entry], *,
    progress: Callable[[int], None] | None = None, batch: int = BATCH,
) -> Imported:  # fmt: skip
    """Send entries to the bulk endpoint, batch by batch; count what was new."""
    created = existing = 0
    missing = f"No project has the slug {project!r}: create it with crunch add-project."
    for chunk in chunks(entries, batch):
        answer = connection.register(project, list(chunk), missing=missing)
        created += len(answer["created"])
        existing += len(answer["existing"])
        if progress is not None:
            progress(len(chunk))
    return Imported(created=created, existing=existing)


def chunks(entries: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def register_with_bar(
    connection: Connection, project: str, entries: Sequence[Entry], *, quiet: bool = False
) -> Imported:
    """register() with a rich progress bar when stderr is a terminal, silent otherwise."""
    if quiet or not sys.stderr.isatty():
        return register(connection, project, entries)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"registering in {project}", total=len(entries))
        return register(connection, project, entries, progress=lambda n: bar.advance(task, n))
