from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import remote, watch


class Command(ClientCommand):
    help = "Say what holds a dataset where it is, and the command that would move it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="The dataset's slug, e.g. 'project:dataset'.")
        parser.add_argument("--json", action="store_true", help="Print the server's JSON.")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        self.stdout.write(watch.why(remote.connect(opts), opts["dataset"], as_json=opts["json"]))
