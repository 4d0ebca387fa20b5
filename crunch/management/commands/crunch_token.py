from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crunch.services.accounts import client_token


class Command(BaseCommand):
    help = (
        "Print an API token for USERNAME, creating the user (in the 'crunch clients' group) "
        "if needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        key, created = client_token(options["username"])
        if created and options["verbosity"] > 1:
            self.stderr.write(f"Created user {options['username']!r}.")
        self.stdout.write(key)
