from __future__ import annotations

from django.apps import AppConfig


class CrunchConfig(AppConfig):
    name = "crunch"
    verbose_name = "Crunch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crunch import checks  # noqa: F401  (registers system checks)
        from crunch.services import removal

        removal.connect()
