from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import add_server_arguments, add_storage_settings, number
from crunchclient.exceptions import Interrupted
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import fetch, logs, remote


def interval(text: str) -> float:
    return number(text, float, what="a number of seconds", least=0.1, bound="is under 0.1")


class Command(ClientCommand):
    help = (
        "Print a dataset's workflow log (.crunch/workflow.log) as stored with its files.\n"
        "It claims nothing; the viewer role may read it. The log's text goes to stdout,\n"
        "notes about it to stderr: a running dataset's client uploads its log when the\n"
        "stage ends, and a dataset with no log yet says so in one line and exits 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="The dataset's slug, e.g. 'project:dataset'.")
        parser.add_argument(
            "--follow", "-f", action="store_true",
            help="While the dataset runs, print the log's new lines as the stored log grows; "
            "exit 0 when it is no longer running.",
        )  # fmt: skip
        parser.add_argument(
            "--every", type=interval, default=logs.FOLLOW_EVERY, metavar="SECONDS",
            help=f"With --follow: seconds between two looks (default {logs.FOLLOW_EVERY:g}).",
        )  # fmt: skip
        add_storage_settings(parser, transfers=True)
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        remote.quiet_transfers(opts["verbosity"])
        connection = remote.connect(opts)
        try:
            logs.show(
                connection, fetch.source_of(opts, connection), opts["dataset"],
                follow=opts["follow"], every=opts["every"], out=self.write_log,
                note=self.stderr.write,
            )  # fmt: skip
        except KeyboardInterrupt:
            raise CommandError(
                "Stopped following the log.", returncode=Interrupted.exit_code
            ) from None

    def write_log(self, text: str) -> None:
        if text:
            self.stdout.write(text, ending="")
            self.stdout.flush()
