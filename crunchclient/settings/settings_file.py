"""The storage settings file: read as TOML or JSON and refused, in one line, when it is wrong.

Every check runs before anything is claimed: a misspelled table once made every dataset
fail as "missing" while the loop exited 0.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError

PARSERS = {".toml": "TOML", ".json": "JSON"}

STORAGE_KEYS = ("BACKEND", "OPTIONS")

STORAGE_SETTINGS = ("STORAGES", "DEFAULT_FILE_STORAGE")
"""The top-level keys that name the storage: a file needs one of them."""

BACKEND_PREFIXES = ("AWS_", "GS_", "GOOGLE_", "AZURE_", "SFTP_", "FTP_", "DROPBOX_", "CRUNCH_")
"""django-storages backends read their defaults from top-level settings with these names."""

KINDS = {
    bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
    tuple: "list", dict: "table", type(None): "null",
}  # fmt: skip


def read_settings_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON settings file into a dict of upper-case settings."""
    if path.suffix.lower() not in PARSERS:
        raise ConfigurationError(
            f"Storage settings file {str(path)!r} has the unknown suffix {path.suffix!r}: "
            "use a .toml or .json file."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"Storage settings file {str(path)!r} does not exist: "
            "check --storage-settings or CRUNCH_STORAGE_SETTINGS."
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"Storage settings file {str(path)!r} cannot be read ({exc.strerror})."
        ) from exc
    kind = PARSERS[path.suffix.lower()]
    try:
        values = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(malformed(path, kind, str(exc), toml_line(exc))) from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(malformed(path, kind, exc.msg, exc.lineno)) from exc
    if not isinstance(values, dict):
        raise ConfigurationError(
            f"Storage settings file {str(path)!r} must hold a table of settings at the top "
            f"level, not a {type(values).__name__}."
        )
    for key in values:
        if not key.isupper():
            raise ConfigurationError(
                f"Storage settings file {str(path)!r} has the key {key!r}; Django settings "
                f"are upper case: rename it {key.upper()!r}."
            )
    check_top_level(values, path)
    check_storages(values, path)
    return values


def known_settings() -> list[str]:
    """Every top-level name a settings file may hold: Django's own and the storages'."""
    from django.conf import global_settings

    names = {name for name in dir(global_settings) if name.isupper()}
    return sorted(names | {*STORAGE_SETTINGS, "STATICFILES_STORAGE"})


def check_top_level(values: dict[str, Any], path: Path) -> None:
    """Refuse a file whose storage would silently be the current folder.

    A misspelled table (``[STORAGE.default]``) or an empty file used to fall back to
    FileSystemStorage in the current folder: every dataset then failed as "missing".
    """
    where = f"Storage settings file {str(path)!r}"
    known = known_settings()
    for key in values:
        if key in known or key.startswith(BACKEND_PREFIXES):
            continue
        close = difflib.get_close_matches(key, list(STORAGE_SETTINGS), n=1, cutoff=0.6)
        close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigurationError(
            f"{where} has the unknown setting {key!r}{hint}: remove it or fix its name."
        )
    storages = values.get("STORAGES")
    if "DEFAULT_FILE_STORAGE" in values or (isinstance(storages, dict) and "default" in storages):
        return
    if storages is not None and not isinstance(storages, dict):
        return  # check_storages says what is wrong with it
    raise ConfigurationError(
        f"{where} names no storage: add a [STORAGES.default] table with its BACKEND "
        '(e.g. BACKEND = "django.core.files.storage.FileSystemStorage" and '
        'OPTIONS = { location = "/data/media" }).'
    )


def kind(value: object) -> str:
    """The name of a value's type as TOML and JSON call it."""
    return KINDS.get(type(value), type(value).__name__)


def check_storages(values: dict[str, Any], path: Path) -> None:
    """Refuse a STORAGES table that Django would trip over with a traceback."""
    where = f"Storage settings file {str(path)!r}"
    storages = values.get("STORAGES")
    if storages is None:
        return
    if not isinstance(storages, dict):
        raise ConfigurationError(
            f"{where}: STORAGES must be a table of storages (e.g. [STORAGES.default]), "
            f"not a {kind(storages)}."
        )
    for alias, params in storages.items():
        name = f"STORAGES[{alias!r}]"
        if not isinstance(params, dict):
            raise ConfigurationError(
                f"{where}: {name} must be a table with BACKEND and OPTIONS, not a {kind(params)}."
            )
        if "BACKEND" not in params:
            raise ConfigurationError(
                f"{where}: {name} has no BACKEND: add the storage's class, e.g. "
                'BACKEND = "django.core.files.storage.FileSystemStorage".'
            )
        backend = params["BACKEND"]
        if not isinstance(backend, str) or not backend.strip():
            raise ConfigurationError(
                f"{where}: {name} BACKEND must be the dotted path of a storage class as a "
                f"string, not {backend!r}."
            )
        for key in params:
            if key not in STORAGE_KEYS:
                raise ConfigurationError(
                    f"{where}: {name} has the unknown key {key!r}: a storage has only BACKEND "
                    "and OPTIONS; the backend's settings go in OPTIONS."
                )
        options = params.get("OPTIONS", {})
        if not isinstance(options, dict):
            raise ConfigurationError(
                f"{where}: {name} OPTIONS must be a table of the backend's settings, "
                f"not a {kind(options)}."
            )


def toml_line(exc: Exception) -> int | None:
    """The line of a TOML error: ``lineno`` on Python 3.14+, else parsed from the message."""
    if lineno := getattr(exc, "lineno", None):
        return int(lineno)
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


def malformed(path: Path, kind: str, reason: str, line: int | None) -> str:
    reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", reason).rstrip(".")
    where = f" at line {line}" if line else ""
    return (
        f"Storage settings file {str(path)!r} is not valid {kind}{where}: {reason}. Fix that line."
    )
