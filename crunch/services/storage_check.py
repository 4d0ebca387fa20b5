"""Check the server's storage and describe it for clients.

A newcomer's first dataset failed as "missing" when the client's storage settings named
another folder than the server's: ``crunch_storage_check --client-settings`` prints the
settings file that names the same one, as an absolute path.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from crunch.exceptions import CrunchError
from crunch.services.files import default_storage

SECRET_OPTION = ("key", "secret", "token", "password", "credential")


class StorageProblem(CrunchError):
    """The default storage cannot be written, read or listed."""


def ensure_location(storage: FileSystemStorage) -> str:
    """The local storage's folder as an absolute path, created when missing."""
    location = os.path.abspath(storage.location)
    try:
        os.makedirs(location, exist_ok=True)
    except OSError as exc:
        raise StorageProblem(
            f"The local storage's folder {location!r} cannot be created ({exc.strerror})."
        ) from None
    return location


def check_storage() -> str:
    """Write, read back and delete a probe file; where the storage is, for the message."""
    storage = default_storage()
    where = type(storage).__name__
    if isinstance(storage, FileSystemStorage):
        where = f"the folder {ensure_location(storage)!r}"
    elif bucket := getattr(storage, "bucket_name", None):
        where = f"the bucket {bucket!r}"
    name = f"crunch-storage-check/{secrets.token_hex(8)}.txt"
    body = b"crunch storage check\n"
    try:
        saved = storage.save(name, io.BytesIO(body))
        with storage.open(saved, "rb") as handle:
            read = handle.read()
        storage.delete(saved)
    except Exception as exc:  # any backend's error: say which storage, in one line
        raise StorageProblem(f"The storage ({where}) refused a test file: {exc}") from None
    if isinstance(storage, FileSystemStorage):
        try:
            os.rmdir(storage.path("crunch-storage-check"))
        except OSError:
            pass  # another check's file is still there
    if read != body:
        raise StorageProblem(f"The storage ({where}) gave back other bytes than it was given.")
    return where


def toml_value(value: object) -> str:
    """A TOML literal for a setting's value (JSON's strings, numbers and booleans are TOML's)."""
    return json.dumps(value)


def client_settings() -> str:
    """The storage.toml a client with direct access needs: the same backend and folder.

    Secrets (keys, passwords) are left out: the client reads them from its own environment
    (``AWS_ACCESS_KEY_ID`` and the like).
    """
    params: dict[str, Any] = settings.STORAGES.get("default") or {}
    options: dict[str, Any] = dict(params.get("OPTIONS") or {})
    storage = default_storage()
    if isinstance(storage, FileSystemStorage):
        options = {"location": ensure_location(storage)}
    lines = ["[STORAGES.default]", f"BACKEND = {toml_value(params.get('BACKEND', ''))}"]
    kept = {
        key: value
        for key, value in options.items()
        if isinstance(value, (str, int, float, bool)) and not any(s in key for s in SECRET_OPTION)
    }
    if kept:
        lines.append("[STORAGES.default.OPTIONS]")
        lines += [f"{key} = {toml_value(value)}" for key, value in sorted(kept.items())]
    bucket_settings = {
        name: getattr(settings, name)
        for name in ("AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_S3_REGION_NAME")
        if isinstance(getattr(settings, name, None), str) and getattr(settings, name)
    }
    if bucket_settings and not isinstance(storage, FileSystemStorage):
        lines = [f"{k} = {toml_value(v)}" for k, v in bucket_settings.items()] + lines
    return "\n".join(lines) + "\n"
