from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crunch.choices import Role
from crunch.exceptions import CrunchError
from crunch.services.accounts import issue_token


def positive_days(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Print a new API token for NAME, creating the user if needed and granting the role "
        "on the named projects (on every project when none is named). The key is shown "
        "this once: the server keeps only its digest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="NAME")
        parser.add_argument(
            "--role", choices=Role.values, default=Role.WORKER,
            help="worker (claims and reports; the default), maintainer (edits) or viewer.",
        )  # fmt: skip
        parser.add_argument(
            "--project", action="append", default=[], metavar="SLUG",
            help="Grant the role on this project only (repeatable).",
        )  # fmt: skip
        parser.add_argument(
            "--expires-days", type=positive_days, default=None, metavar="DAYS",
            help="The token stops working after this many days (default: never).",
        )  # fmt: skip
        parser.add_argument("--name", default="", help="A label shown in the admin.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            issued = issue_token(
                options["username"],
                role=options["role"],
                projects=options["project"],
                expires_days=options["expires_days"],
                name=options["name"],
            )
        except CrunchError as exc:
            raise CommandError(str(exc)) from exc
        if issued.created_user and options["verbosity"] > 1:
            self.stderr.write(f"Created user {options['username']!r}.")
        self.stdout.write(issued.key)
