"""The admin: every add, change and delete checked by crunch.access on the object's project
before and after the change, as the API is; actions call the services, as the API does."""

from __future__ import annotations

from crunch.admin import clients, datasets, projects  # noqa: F401  (register the ModelAdmins)
