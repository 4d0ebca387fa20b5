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
from crunchclient.terminal import fetch, remote, watch


class Command(ClientCommand):
    help = (
        "Copy datasets' stored files into DEST/<project>/<dataset>/ (parallel, resumable, "
        "checksums verified) without claiming them: their state and attempts stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("datasets", nargs="*", metavar="DATASET", help="Datasets' slugs.")
        parser.add_argument("--project", help="Every dataset of this project (with --state).")
        parser.add_argument("--state", choices=watch.STATES, help="With --project: only these.")
        parser.add_argument(
            "--dest", type=Path, default=Path("."), help="Where to put them (default: here)."
        )
        parser.add_argument(
            "--outputs-only", action="store_true",
            help="Leave out the files Setup had (the dataset's .crunch/setup_md5_checksums.json)"
            " unless the workflow changed them.",
        )  # fmt: skip
        add_storage_settings(parser, transfers=True)
        add_copy_arguments(parser, copied="copied")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        if bool(opts["datasets"]) == bool(opts["project"]):
            raise CommandError(
                "Name datasets (crunch download DATASET...) or a project "
                "(crunch download --project P --state completed), not both.",
                returncode=ConfigurationError.exit_code,
            )
        remote.quiet_transfers(opts["verbosity"])
        connection = remote.connect(opts)
        done = fetch.download(
            connection, fetch.source_of(opts, connection), opts["datasets"],
            project=opts["project"], state=opts["state"], dest=opts["dest"],
            outputs_only=opts["outputs_only"], jobs=opts["jobs"], quiet=opts["quiet"],
        )  # fmt: skip
        for item in done:
            self.stdout.write(item.summary())
        self.stdout.write(f"Downloaded {len(done)} dataset(s).")
