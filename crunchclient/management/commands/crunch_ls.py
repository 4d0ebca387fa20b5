from __future__ import annotations

import shutil
import sys
from typing import Any

from django.core.management.base import CommandParser

from crunch.choices import FailReason
from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import remote, watch


class Command(ClientCommand):
    help = "List a project's datasets: slug, state, attempts, stage and last failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--state", choices=watch.STATES, help="Only datasets in this state.")
        parser.add_argument("--search", metavar="TEXT", help="Only datasets whose name holds TEXT.")
        parser.add_argument(
            "--reason", choices=FailReason.values, metavar="REASON",
            help="Only datasets whose last run failed for REASON: "
            f"{', '.join(FailReason.values)}.",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="Print the datasets as JSON.")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        self.stdout.write(
            watch.ls(
                remote.connect(opts),
                opts["project"],
                state=opts["state"],
                search=opts["search"],
                reason=opts["reason"],
                as_json=opts["json"],
                width=width,
            )
        )
