from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.exceptions import ConfigurationError
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import entry, remote


class Command(ClientCommand):
    help = (
        "Add a typed attribute to a project, dataset or item (crunch add-<type>-attribute "
        "ITEM KEY VALUE, as in django-crunch 0.1; lat-long takes LATITUDE LONGITUDE)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("type", choices=sorted(entry.ATTRIBUTE_TYPES), help="The value's type.")
        parser.add_argument("item", help="The slug of the project, dataset or item.")
        parser.add_argument("key", help="The attribute's name.")
        parser.add_argument("value", nargs="+", help="The value (lat-long: LATITUDE LONGITUDE).")
        parser.add_argument(
            "--format", default="", help="For date and datetime: a strptime format to read VALUE."
        )
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        wanted = 2 if entry.ATTRIBUTE_TYPES[opts["type"]] == "lat-long" else 1
        if len(opts["value"]) != wanted:
            raise CommandError(
                f"add-{opts['type']}-attribute takes ITEM KEY "
                f"{'LATITUDE LONGITUDE' if wanted == 2 else 'VALUE'}, not {opts['value']!r}.",
                returncode=ConfigurationError.exit_code,
            )
        line = entry.add_attribute(
            remote.connect(opts), opts["type"], opts["item"], opts["key"], opts["value"],
            format=opts["format"],
        )  # fmt: skip
        self.stdout.write(line)
