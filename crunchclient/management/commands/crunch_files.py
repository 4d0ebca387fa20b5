from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments, add_storage_settings
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import fetch, remote


class Command(ClientCommand):
    help = "List a dataset's stored files with their sizes (django-crunch 0.1's files)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="The dataset's slug, e.g. 'project:dataset'.")
        parser.add_argument(
            "storage_settings_file", nargs="?", metavar="STORAGE_SETTINGS",
            help="The storage settings file, as django-crunch 0.1 took it (or --storage-settings).",
        )  # fmt: skip
        add_storage_settings(parser, transfers=True)
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        connection = remote.connect(opts)
        self.stdout.write(
            fetch.files(connection, fetch.source_of(opts, connection), opts["dataset"])
        )
