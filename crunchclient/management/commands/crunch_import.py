from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import (
    add_copy_arguments,
    add_server_arguments,
    add_storage_settings,
)
from crunchclient.exceptions import ConfigurationError
from crunchclient.management.base import ClientCommand
from crunchclient.settings import bootstrap
from crunchclient.terminal import importing, remote


class Command(ClientCommand):
    help = (
        "Register one dataset per folder of a storage prefix (--from-storage), per local "
        "folder copied into storage first (--upload), or per row of a CSV (--from-csv); "
        "re-running adds only what is new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="The slug of the project.")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--from-storage", metavar="PREFIX",
            help="Every folder directly under PREFIX in storage becomes a dataset.",
        )  # fmt: skip
        source.add_argument(
            "--upload", nargs="+", type=Path, metavar="DIR",
            help="Copy each local folder into storage under crunch/<project>/<name>, then "
            "register it.",
        )  # fmt: skip
        source.add_argument(
            "--from-csv", type=Path, metavar="FILE",
            help="Columns: name, optional base_file_path, description, details, priority, "
            "then one per attribute named key:type (e.g. depth:float).",
        )  # fmt: skip
        add_storage_settings(parser, use=" for --from-storage and --upload")
        add_copy_arguments(parser, copied="uploaded")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        project = opts["project"]
        remote.quiet_transfers(opts["verbosity"])
        connection = remote.connect(opts)
        if opts["from_csv"]:
            entries = importing.from_csv(opts["from_csv"])
        elif opts["from_storage"] is not None:
            entries = importing.from_storage(bootstrap.get_storage(), opts["from_storage"])
        elif opts["upload"]:
            connection.project(project)  # a missing project before anything is copied
            entries = importing.upload_folders(
                bootstrap.get_storage(), connection, project, opts["upload"],
                jobs=opts["jobs"], quiet=opts["quiet"],
            )  # fmt: skip
        else:
            raise CommandError(
                "Say where the datasets come from: --from-storage PREFIX, --upload DIR... "
                "or --from-csv FILE.",
                returncode=ConfigurationError.exit_code,
            )
        result = importing.register_with_bar(connection, project, entries, quiet=opts["quiet"])
        self.stdout.write(result.summary())
