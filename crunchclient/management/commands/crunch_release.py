"""``crunch release DATASET``: a maintainer returns a running dataset to pending now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_server_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import projects, remote


class Command(ClientCommand):
    help = (
        "Return a running dataset to pending now, e.g. after its client was killed and its "
        "lease expired, or when it is stuck (a maintainer's role). A dataset that is not "
        "running is refused with exit code 3."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="The dataset's slug, e.g. 'project:dataset'.")
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        self.stdout.write(projects.release(remote.connect(opts), opts["dataset"]))
