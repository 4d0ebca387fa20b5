"""The one place that configures Django for the client.

Inside a Django project (``manage.py crunch_next``) the project's settings and STORAGES
are used as they are. The standalone ``crunch`` script calls ``configure_from_file()``
with the storage settings file: the same values as the server's Django settings.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError

PARSERS = {".toml": "TOML", ".json": "JSON"}

configured_from: Path | None = None
"""The settings file the standalone client configured Django from, if any."""

SECRET_NAME = re.compile(r"key|secret|passw|token|credential|connection_string", re.IGNORECASE)
"""Settings whose values are secrets: kept out of the workflow, its log and messages."""

STORAGE_KEYS = ("BACKEND", "OPTIONS")

STORAGE_SETTINGS = ("STORAGES", "DEFAULT_FILE_STORAGE")
"""The top-level keys that name the storage: a file needs one of them."""

BACKEND_PREFIXES = ("AWS_", "GS_", "GOOGLE_", "AZURE_", "SFTP_", "FTP_", "DROPBOX_", "CRUNCH_")
"""django-storages backends read their defaults from top-level settings with these names."""

FILE_SYSTEM_TYPES: dict[str, type] = {
    "location": str, "base_url": str, "file_permissions_mode": int,
    "directory_permissions_mode": int, "allow_overwrite": bool,
}  # fmt: skip
"""FileSystemStorage's OPTIONS and their types (its defaults are None: nothing to infer)."""

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
        reason = redact(str(exc), secret_values())
        raise ConfigurationError(
            f"Storage backend {backend_path()!r} refused its OPTIONS ({reason}): fix {where_set()}."
        ) from exc
    check_location(storage)
    return storage


def where_set() -> str:
    """Where the storage settings come from, for messages."""
    if configured_from is not None:
        return f"the storage settings file {str(configured_from)!r}"
    return "the STORAGES setting"


def option_types(backend: type) -> dict[str, type | None] | None:
    """The OPTIONS a backend takes, each with its type if known; None if it takes any."""
    from django.core.files.storage import FileSystemStorage

    if issubclass(backend, FileSystemStorage):
        return dict(FILE_SYSTEM_TYPES)
    if callable(getattr(backend, "get_default_settings", None)):  # django-storages
        try:
            defaults = backend.__new__(backend).get_default_settings()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a backend we cannot inspect is not checked
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
    if configured_from is not None:
        where = f"Storage settings file {str(configured_from)!r}: STORAGES['default'] OPTIONS"
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


def secret_values() -> set[str]:
    """The values of the settings that look secret: storage keys, passwords, tokens."""
    from django.conf import settings

    found: set[str] = set()

    def collect(mapping: Any) -> None:
        if not isinstance(mapping, dict):
            return
        for key, value in mapping.items():
            if isinstance(value, str) and value.strip() and SECRET_NAME.search(str(key)):
                found.add(value)

    for params in (getattr(settings, "STORAGES", None) or {}).values():
        if isinstance(params, dict):
            collect(params.get("OPTIONS"))
    for database in (getattr(settings, "DATABASES", None) or {}).values():
        collect(database)
    names = [name for name in dir(settings) if name.isupper()]
    if is_standalone():
        names.remove("SECRET_KEY")  # ours, not a secret: see settings_from_values()
    collect({name: getattr(settings, name, None) for name in names})
    return found


def redact(text: str, secrets: set[str] | frozenset[str]) -> str:
    """The text with every secret in it replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def backend_path() -> str:
    from django.conf import settings

    return str(settings.STORAGES.get("default", {}).get("BACKEND", ""))
