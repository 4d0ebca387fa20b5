"""A deleted dataset takes its stored files with it.

Without this, a dataset's folder outlives its row: a new project or dataset that takes the
same slug gets the same default folder (``crunch/<project>/<dataset>``) and shows, serves
and hands to its workflow the files of the one that was deleted, to anonymous visitors if
it is public. So when a dataset is deleted (on its own, or with its project), its folder
in storage is deleted once the deletion commits. ``CRUNCH_DELETE_STORED_FILES = False``
keeps the files instead, for sites that clean storage by their own rules.

A dataset never changes project (the API and the admin refuse it), so its folder, named
by its slug when it was created, stays bound to it for its whole life.

Links are never followed: on a local disk a symlink in the folder is removed as a link,
its target stays untouched, and a folder whose real path leaves the storage is left alone.
"""

from __future__ import annotations

import logging
import os
import posixpath
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage
from django.db import transaction
from django.db.models.signals import post_delete

from crunch.conf import crunch_settings
from crunch.models import Dataset
from crunch.services.files import default_storage
from crunch.services.paths import UnsafePath, clean_base_file_path

logger = logging.getLogger(__name__)


def delete_stored_folder(base_file_path: str, storage: Storage | None = None) -> int:
    """Delete every file under ``base_file_path`` in storage; the number of files deleted."""
    try:
        base = clean_base_file_path(base_file_path)
    except UnsafePath:
        return 0
    storage = storage or default_storage()
    if isinstance(storage, FileSystemStorage):
        return _delete_local(storage, base)
    return _delete_listed(storage, base)


def _delete_local(storage: FileSystemStorage, base: str) -> int:
    location = os.path.realpath(storage.location)
    try:
        folder = storage.path(base)
    except SuspiciousFileOperation:
        return 0
    if os.path.realpath(folder) != os.path.normpath(folder) or not folder.startswith(
        location + os.sep
    ):
        return 0  # the folder itself is (or lies under) a link: not ours to empty
    deleted = 0
    for root, dirs, files in os.walk(folder, topdown=False, followlinks=False):
        for name in files:
            os.unlink(os.path.join(root, name))
            deleted += 1
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)  # the link, never what it points at
            else:
                os.rmdir(path)
    if os.path.isdir(folder):
        os.rmdir(folder)
    return deleted


def _delete_listed(storage: Storage, base: str) -> int:
    deleted = 0
    folders, files = storage.listdir(base)
    for name in files:
        storage.delete(posixpath.join(base, name))
        deleted += 1
    for name in folders:
        deleted += _delete_listed(storage, posixpath.join(base, name))
    return deleted


def delete_files_of(sender: Any, instance: Dataset, **kwargs: Any) -> None:
    """``post_delete`` of a dataset: delete its folder after the deletion commits."""
    if not crunch_settings.DELETE_STORED_FILES or not instance.base_file_path:
        return
    base_file_path = instance.base_file_path

    def delete() -> None:
        try:
            count = delete_stored_folder(base_file_path)
        except (OSError, NotImplementedError, ValueError) as exc:
            logger.warning("Could not delete the files under %s: %s", base_file_path, exc)
            return
        logger.info("Deleted %d stored file(s) under %s.", count, base_file_path)

    transaction.on_commit(delete)


def connect() -> None:
    post_delete.connect(delete_files_of, sender=Dataset, dispatch_uid="crunch-delete-files")
