from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import remote, watch


class Command(ClientCommand):
    help = (
        "Show a project's progress (or every project's): counts by state, throughput, time "
        "to finish, live clients by Slurm job and the largest failure groups."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="Only this project (its slug).")
        parser.add_argument("--json", action="store_true", help="Print the server's JSON.")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        connection = remote.connect(opts)
        self.stdout.write(watch.status(connection, opts["project"], as_json=opts["json"]))
