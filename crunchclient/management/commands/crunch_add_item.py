from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import entry, remote


class Command(ClientCommand):
    help = "Add an item to a dataset or item and print its slug (django-crunch 0.1's add-item)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("parent", help="The slug of the dataset or item it belongs to.")
        parser.add_argument("name", help="The name of the new item.")
        parser.add_argument("--description", default="", help="A brief description.")
        parser.add_argument("--details", default="", help="A long description in Markdown.")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        slug = entry.add_item(
            remote.connect(opts), opts["parent"], opts["name"],
            description=opts["description"], details=opts["details"],
        )  # fmt: skip
        self.stdout.write(slug)
