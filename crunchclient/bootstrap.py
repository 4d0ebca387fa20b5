"""The one place that configures Django for the client.

Inside a Django project (``manage.py crunch_next``) the project's settings and STORAGES
are used as they are. The standalone ``crunch`` script calls ``configure_from_file()``
with the storage settings file: the same values as the server's Django settings.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PARSERS = {".toml": "TOML", ".json": "JSON"}

configured_from: Path | None = None
"""The settings file the standalone client configured Django from, if any."""


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
    return values


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
    global configured_from
    path = Path(path).expanduser()
    values = settings_from_values(read_settings_file(path))
    configure(values)
    configured_from = path


def configure_minimal() -> None:
    """Configure Django with no storage: for ``--help`` and commands that only talk HTTP."""
    configure(settings_from_values({}))


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
    return configured_from is not None


def get_storage() -> Any:
    """The default storage in both modes; a backend that cannot be imported is a clear error."""
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.files.storage import storages
    from django.core.files.storage.handler import InvalidStorageError

    try:
        if is_standalone() and django.VERSION < (5, 1):
            # Django 4.2's settings.configure(STORAGES=...) also sets DEFAULT_FILE_STORAGE,
            # and its storage handler then drops the default's OPTIONS: build it ourselves.
            from django.conf import settings

            return storages.create_storage(settings.STORAGES["default"])
        return storages["default"]
    except (ImportError, ImproperlyConfigured) as exc:
        if isinstance(exc, InvalidStorageError) and not backend_path():
            raise ConfigurationError(
                "STORAGES has no 'default' storage: add one with its BACKEND."
            ) from exc
        # Django wraps the ImportError of a missing package; its message is the useful one.
        reason = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        raise ConfigurationError(
            f"Storage backend {backend_path()!r} cannot be imported ({reason}): install its "
            "package, e.g. pip install 'django-crunch[s3]' for S3."
        ) from exc


def backend_path() -> str:
    from django.conf import settings

    return str(settings.STORAGES.get("default", {}).get("BACKEND", ""))
