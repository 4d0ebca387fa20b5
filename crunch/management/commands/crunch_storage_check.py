"""``manage.py crunch_storage_check``: is the server's storage usable, and what do clients need?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crunch.services.storage_check import StorageProblem, check_storage, client_settings


class Command(BaseCommand):
    help = (
        "Check the default storage (a local folder is created if missing): write, read and "
        "delete a small file. With --client-settings, print the storage.toml that compute "
        "clients with direct storage access need (secrets left out)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client-settings", action="store_true",
            help="Print a storage.toml for clients after the check.",
        )  # fmt: skip

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            where = check_storage()
        except StorageProblem as exc:
            raise CommandError(str(exc)) from None
        if opts["client_settings"]:
            self.stdout.write(client_settings(), ending="")
        else:
            self.stdout.write(f"The storage works: {where}.")
