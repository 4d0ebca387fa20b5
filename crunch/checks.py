from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_storages(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Crunch reads and writes dataset files through the default storage."""
    if "default" not in getattr(settings, "STORAGES", {"default": None}):
        return [
            checks.Error(
                "STORAGES has no 'default'.",
                hint="Crunch keeps dataset files in the default storage; add STORAGES['default'].",
                id="crunch.E001",
            )
        ]
    return []
