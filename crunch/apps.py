from __future__ import annotations

import warnings
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CrunchConfig(AppConfig):
    name = "crunch"
    verbose_name = "Crunch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crunch import checks  # noqa: F401  (registers system checks)
        from crunch.services import removal

        removal.connect()
        post_migrate.connect(create_media_folder, sender=self)


def create_media_folder(**kwargs: Any) -> None:
    """``migrate`` creates the local storage's folder, so a new server's first upload works."""
    from django.core.files.storage import FileSystemStorage

    from crunch.services.files import default_storage
    from crunch.services.storage_check import StorageProblem, ensure_location

    storage = default_storage()
    if isinstance(storage, FileSystemStorage):
        try:
            ensure_location(storage)
        except StorageProblem as exc:
            warnings.warn(str(exc), stacklevel=1)
