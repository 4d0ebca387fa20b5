"""Data entry as django-crunch 0.1 did it: one project, dataset, item or attribute per
call, each printing what it made, so scripts written against 0.1 keep working."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError
from crunchclient.server.connection import Connection
from crunchclient.settings import kinds

ATTRIBUTE_TYPES = {
    "char": "char", "int": "int", "integer": "int", "float": "float", "bool": "bool",
    "boolean": "bool", "date": "date", "datetime": "datetime", "url": "url",
    "filesize": "filesize", "lat-long": "lat-long", "latlong": "lat-long",
}  # fmt: skip
"""{the name in ``add-<name>-attribute``: the server's type} (0.1 said integer, boolean)."""

TRUE = {"true", "t", "yes", "y", "1", "on"}
FALSE = {"false", "f", "no", "n", "0", "off"}
EXAMPLES = {"int": "42", "filesize": "1024", "float": "3.5", "bool": "true"}


def add_project(  # noqa: PLR0913 (keyword-only: the project's fields)
    connection: Connection, name: str, *, description: str = "", details: str = "",
    workflow: Path | None = None, kind: str | None = None, public: bool = False,
    container: str = "", retry_policy: dict[str, Any] | None = None,
) -> str:  # fmt: skip
    """Create a project; return its slug."""
    body: dict[str, Any] = {"name": name, "description": description, "details": details}
    if workflow is not None:
        try:
            body["workflow"] = workflow.expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"Workflow file {str(workflow)!r} cannot be read ({exc}): check --workflow."
            ) from exc
        if kind is None:
            kind = kinds.kind_of_file(workflow)
    if kind:
        body["workflow_kind"] = kind
    if public:
        body["is_public"] = True
    if container:
        body["container"] = container
    if retry_policy:
        body["retry_policy"] = retry_policy
    return connection.create_project(body)


def add_dataset(
    connection: Connection, project: str, name: str, *, description: str = "",
    details: str = "", base_file_path: str = "",
) -> str:  # fmt: skip
    """Create a dataset in project (its slug); return the dataset's slug."""
    body = {"parent": project, "name": name, "description": description, "details": details}
    if base_file_path:
        body["base_file_path"] = base_file_path
    return connection.create_dataset(body)


def add_item(
    connection: Connection, parent: str, name: str, *, description: str = "", details: str = ""
) -> str:
    """Create an item under a dataset or item (its slug); return the item's slug."""
    body = {"parent": parent, "name": name, "description": description, "details": details}
    return connection.create_item(body)


def typed_value(kind: str, value: str, *, format: str = "") -> Any:
    """The command-line text as the JSON value of its type; an error names the value."""
    kind = ATTRIBUTE_TYPES[kind]
    try:
        if kind in ("int", "filesize"):
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            lowered = value.strip().lower()
            if lowered not in TRUE | FALSE:
                raise ValueError
            return lowered in TRUE
        if kind in ("date", "datetime") and format:
            moment = datetime.datetime.strptime(value, format)
            return (moment.date() if kind == "date" else moment).isoformat()
    except ValueError:
        hint = f" (read with --format {format!r})" if format else ""
        raise ConfigurationError(
            f"{value!r} is not a {kind} value{hint}: give e.g. {EXAMPLES.get(kind, '2024-05-01')}."
        ) from None
    return value


def add_attribute(
    connection: Connection, kind: str, item: str, key: str, values: list[str], *, format: str = ""
) -> str:
    """Add a typed attribute to a project, dataset or item; return 'slug: key = value'."""
    server_kind = ATTRIBUTE_TYPES[kind]
    body: dict[str, Any] = {"item": item, "key": key}
    if server_kind == "lat-long":
        body["latitude"], body["longitude"] = (typed_value("float", v) for v in values)
    else:
        body["value"] = typed_value(kind, values[0], format=format)
    answer = connection.add_attribute(server_kind, body)
    return f"{answer['item']}: {answer['key']} = {answer['display']}"
