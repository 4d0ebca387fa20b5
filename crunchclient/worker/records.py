"""The ``.crunch/`` records of a dataset: their names, JSON in and out, which paths are
records (or tool caches, never data) and the Setup checksums Upload compares against.

The names come from ``crunch.constants``, which the server reads too (the log it shows).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from crunch.constants import (
    DATASET_RECORD,
    DELETED,
    PROJECT_RECORD,
    RECORDS,
    RESULTS_RECORD,
    SETUP_CHECKSUMS,
    UPLOAD_CHECKSUMS,
    WORKFLOW_LOG,
    record_path,
)
from crunchclient.settings import kinds
from crunchclient.transfer.paths import write_all, write_then_rename

__all__ = [
    "DATASET_RECORD", "DELETED", "PROJECT_RECORD", "RECORDS", "RESULTS_RECORD", "SETUP_CHECKSUMS",
    "UPLOAD_CHECKSUMS", "WORKFLOW_LOG", "is_cache", "is_record", "read_json", "record_path",
    "write_file", "write_json",
]  # fmt: skip

logger = logging.getLogger(__name__)


def is_record(path: str) -> bool:
    """Whether a relative path is crunch's own record or a tool's cache, not the dataset's data."""
    return path.startswith((f"{RECORDS}/", *kinds.cache_folders()))


def is_cache(path: str) -> bool:
    """Tool caches that are never uploaded (Snakemake's bookkeeping)."""
    return path.startswith(kinds.cache_folders())


def write_json(path: Path, value: Any) -> None:
    write_file(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_file(path: Path, data: bytes) -> None:
    """Write path whole or not at all: on a full disk no cut-off record takes its name."""

    def write(partial: str) -> None:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    write_then_rename(str(path), secrets.token_hex(4), write)


def read_json(path: Path) -> Any:
    """The JSON in path; None if it is missing or not JSON (a record from an aborted run)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
