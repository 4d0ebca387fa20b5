"""The one place that configures Django for the client.

Inside a Django project (``manage.py crunch_next``) the project's settings and STORAGES
are used as they are. The standalone ``crunch`` script calls ``configure_from_file()``
with the storage settings file: the same values as the server's Django settings.
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError
from crunchclient.settings.secrets import SECRET_NAME, redact, secret_values
from crunchclient.settings.settings_file import (  # the file, read and checked
    KINDS,
    kind,
    read_settings_file,
)


@dataclass
class Bootstrap:
    """How Django was configured in this process: by the standalone client from a storage
    settings file (``configured_from``) or with no storage (``minimal``), or by a Django
    project (neither)."""

    configured_from: Path | None = None
    minimal: bool = False

    def configure_from_file(self, path: Path | str) -> None:
        """Configure Django from a storage settings file, for the standalone ``crunch``."""
        path = Path(path).expanduser()
        configure(settings_from_values(read_settings_file(path)))
        self.configured_from = path

    def configure_minimal(self) -> None:
        """Configure Django with no storage, for the standalone ``crunch``."""
        configure(settings_from_values({}))
        self.minimal = True

    @property
    def standalone(self) -> bool:
        """Whether Django was configured by the client rather than by a Django project."""
        return self.configured_from is not None or self.minimal


PROCESS = Bootstrap()
"""This process's: Django is configured once per process."""

FILE_SYSTEM_TYPES: dict[str, type] = {
    "location": str, "base_url": str, "file_permissions_mode": int,
    "directory_permissions_mode": int, "allow_overwrite": bool,
}  # fmt: skip
"""FileSystemStorage's OPTIONS and their types (its defaults are None: nothing to infer)."""


def settings_from_values(values: dict[str, Any]) -> dict[str, Any]:
    """Translate the file's values into ``settings.configure()`` arguments.

    A legacy ``DEFAULT_FILE_STORAGE`` becomes ``STORAGES["default"]``; django-storages
    still reads the ``AWS_*`` keys as its defaults, so they pass through unchanged.
    """
    values = dict(values)
    storages = dict(values.pop("STORAGES", {}) or {})
    legacy = values.pop("DEFAULT_FILE_STORAGE", None)
    if legacy and "default" not in storages:
        storages["default"] = {"BACKEND": legacy}
    storages.setdefault("default", {"BACKEND": "django.core.files.storage.FileSystemStorage"})
    storages.setdefault(
        "staticfiles", {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    )
    apps = list(values.pop("INSTALLED_APPS", []))
    return {
        "DATABASES": {},
        "USE_TZ": True,
        "SECRET_KEY": "crunch-client",
        "LOGGING_CONFIG": None,
        **values,
        "INSTALLED_APPS": ["crunchclient", *[app for app in apps if app != "crunchclient"]],
        "STORAGES": storages,
    }


def configure_from_file(path: Path | str) -> None:
    """Configure Django from a storage settings file, for the standalone ``crunch`` script."""
    PROCESS.configure_from_file(path)


def configure_minimal() -> None:
    """Configure Django with no storage: for ``--help`` and commands that only talk HTTP."""
    PROCESS.configure_minimal()


def configure(values: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        raise ConfigurationError(
            "Django is already configured; the storage settings file is read only by the "
            "standalone 'crunch' script, once."
        )
    settings.configure(**values)
    django.setup()


def is_standalone() -> bool:
    """Whether Django was configured by this module rather than by a Django project."""
    return PROCESS.standalone


def get_storage() -> Any:
    """The default storage in both modes; a backend that cannot be imported, refuses its
    OPTIONS or has no folder is a clear error."""
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.files.storage import storages
    from django.core.files.storage.handler import InvalidStorageError
    from django.utils.module_loading import import_string

    params: dict[str, Any] = settings.STORAGES.get("default") or {}
    if not params:
        raise ConfigurationError("STORAGES has no 'default' storage: add one with its BACKEND.")
    try:
        backend = import_string(backend_path())
    except ImportError as exc:
        raise ConfigurationError(
            f"Storage backend {backend_path()!r} cannot be imported ({exc}): install its "
            "package, e.g. pip install 'django-crunch[s3]' for S3."
        ) from exc
    if is_standalone():
        check_options(backend, dict(params.get("OPTIONS") or {}))
    try:
        if is_standalone() and django.VERSION < (5, 1):
            # Django 4.2's settings.configure(STORAGES=...) also sets DEFAULT_FILE_STORAGE,
            # and its storage handler then drops the default's OPTIONS: build it ourselves.
            storage = storages.create_storage(params)
        else:
            storage = storages["default"]
    except InvalidStorageError as exc:  # pragma: no cover - imported above
        raise ConfigurationError(f"Storage backend {backend_path()!r}: {exc}") from exc
    except (ImproperlyConfigured, TypeError, ValueError) as exc:
        reason = redact(str(exc), secret_values(standalone=is_standalone()))
        raise ConfigurationError(
            f"Storage backend {backend_path()!r} refused its OPTIONS ({reason}): fix {where_set()}."
        ) from exc
    check_location(storage)
    return storage


def where_set() -> str:
    """Where the storage settings come from, for messages."""
    if PROCESS.configured_from is not None:
        return f"the storage settings file {str(PROCESS.configured_from)!r}"
    return "the STORAGES setting"


def option_types(backend: type) -> dict[str, type | None] | None:
    """The OPTIONS a backend takes, each with its type if known; None if it takes any."""
    from django.core.files.storage import FileSystemStorage

    if issubclass(backend, FileSystemStorage):
        return dict(FILE_SYSTEM_TYPES)
    if callable(getattr(backend, "get_default_settings", None)):  # django-storages
        try:
            defaults = backend.__new__(backend).get_default_settings()  # type: ignore[attr-defined]
        except Exception:  # a backend we cannot inspect is not checked
            return None
        return {
            name: type(value) if value is not None else (str if SECRET_NAME.search(name) else None)
            for name, value in defaults.items()
        }
    try:
        parameters = inspect.signature(backend.__init__).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {
        name: type(p.default) if p.default not in (None, inspect.Parameter.empty) else None
        for name, p in list(parameters.items())[1:]
    }


def fits(value: object, expected: type) -> bool:
    if expected in (tuple, list):
        return isinstance(value, (list, tuple))
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_options(backend: type, options: dict[str, Any]) -> None:
    """Refuse OPTIONS the backend does not know, or of the wrong type, in one line."""
    types = option_types(backend)
    if types is None:
        return
    if PROCESS.configured_from is not None:
        where = (
            f"Storage settings file {str(PROCESS.configured_from)!r}: STORAGES['default'] OPTIONS"
        )
    else:
        where = "STORAGES['default'] OPTIONS"
    for key, value in options.items():
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"{where} has the unknown key {key!r} for {backend.__name__}{hint}: "
                "remove it or fix its name."
            )
        expected = types[key]
        if expected is not None and not fits(value, expected):
            shown = "" if SECRET_NAME.search(key) else f" {value!r}"
            raise ConfigurationError(
                f"{where} {key!r} must be a {KINDS.get(expected, expected.__name__)}, "
                f"not the {kind(value)}{shown}: fix its value."
            )


def check_location(storage: Any) -> None:
    """A local storage must have its folder: a missing one is a disk not mounted, found
    before anything is claimed rather than as an empty dataset."""
    from django.core.files.storage import FileSystemStorage

    if isinstance(storage, FileSystemStorage) and not os.path.isdir(storage.location):
        raise ConfigurationError(
            f"The local storage's location {str(storage.location)!r} is not a folder: "
            f"mount or create it, or fix OPTIONS location in {where_set()}."
        )


def backend_path() -> str:
    from django.conf import settings

    return str(settings.STORAGES.get("default", {}).get("BACKEND", ""))


def storage_location(storage: Any) -> str:
    """Where a storage keeps its files, for messages: a local folder or a bucket, or the
    server (``--transfer server``: a backend that says where itself)."""
    if described := getattr(storage, "described", None):
        return str(described)
    location = getattr(storage, "location", None)
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        return f"bucket {bucket!r}" + (f" under {location!r}" if location else "")
    if location:
        return f"the local storage at {str(location)!r}"
    return f"the {type(storage).__name__} storage"
