"""The registry of storage backends: which StorageBackend serves which Django storage.

A storage is looked up by its class and then its base classes, each by the dotted path
it is known by (where it is defined, or a package that exports it, as settings name it:
"django.core.files.storage.FileSystemStorage"). The first backend found that supports()
the storage serves it; GenericBackend serves every other storage. Backends are named
by path and imported only when used, so a local-disk client never loads boto3.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from crunchclient.transfer.backends.base import Entry, StorageBackend
from crunchclient.transfer.backends.generic import GenericBackend

if TYPE_CHECKING:
    from django.core.files.storage import Storage

__all__ = [
    "BACKENDS",
    "Entry",
    "GenericBackend",
    "StorageBackend",
    "backend_class",
    "open_backend",
    "storage_names",
]

_LOCAL = "crunchclient.transfer.backends.local.LocalBackend"
_S3 = "crunchclient.transfer.backends.s3.S3Backend"

BACKENDS: dict[str, str] = {
    "django.core.files.storage.FileSystemStorage": _LOCAL,
    "storages.backends.s3.S3Storage": _S3,
    "storages.backends.s3boto3.S3Boto3Storage": _S3,  # django-storages before 1.14
    # Django's contract for every other storage: one that implements path() keeps its
    # files where open() reads them.
    "django.core.files.storage.Storage": _LOCAL,
}
"""{storage class path: StorageBackend class path}"""


def storage_names(cls: type) -> Iterator[str]:
    """The dotted paths cls is known by: where it is defined, then each package above
    that module which exports it under the same name."""
    module = cls.__module__
    yield f"{module}.{cls.__qualname__}"
    while "." in module:
        module = module.rpartition(".")[0]
        # A parent package is imported before its modules: this only looks it up.
        if getattr(importlib.import_module(module), cls.__name__, None) is cls:
            yield f"{module}.{cls.__qualname__}"


def backend_class(storage: Storage) -> type[StorageBackend]:
    """The StorageBackend class that serves storage (see BACKENDS)."""
    # __class__, not type(): default_storage is a LazyObject that passes it through.
    for cls in storage.__class__.__mro__:
        for name in storage_names(cls):
            path = BACKENDS.get(name)
            if path is None:
                continue
            backend: type[StorageBackend] = import_string(path)
            if backend.supports(storage):
                return backend
    return GenericBackend


@contextmanager
def open_backend(storage: Storage | StorageBackend, jobs: int) -> Iterator[StorageBackend]:
    """The backend for storage with jobs workers, closed afterwards; a StorageBackend
    given instead of a storage is used as it is, and left open for its owner."""
    if isinstance(storage, StorageBackend):
        yield storage
        return
    with backend_class(storage)(storage, jobs) as backend:
        yield backend
