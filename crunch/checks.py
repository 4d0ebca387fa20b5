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


SUPPORTED_DATABASES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
"""The vendors crunch's hand-written statements (crunch/db/queries.sql) are tested on."""


@checks.register(checks.Tags.compatibility, checks.Tags.database)
def check_databases(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Crunch runs on PostgreSQL and SQLite only: its claim queue and status statements are
    written for them (UPDATE ... RETURNING, FOR UPDATE SKIP LOCKED).

    An Error, not a Warning: on another database the first claim fails. Only the
    databases the router gives crunch's models are checked; the vendor is known without
    connecting, so ``manage.py check`` runs it too.
    """
    from django.apps import apps
    from django.db import connections, router

    models = apps.get_app_config("crunch").get_models()
    aliases = {alias for m in models for alias in (router.db_for_read(m), router.db_for_write(m))}
    supported = " and ".join(SUPPORTED_DATABASES.values())
    return [
        checks.Error(
            f"The database {alias!r} is {connections[alias].display_name}; crunch supports "
            f"{supported} only.",
            hint="Point DATABASES at a PostgreSQL or SQLite database for crunch's models.",
            id="crunch.E002",
        )
        for alias in sorted(a for a in aliases if a is not None)
        if connections[alias].vendor not in SUPPORTED_DATABASES
    ]
