"""``crunch project show|set|pause|resume P``: a project's settings, a maintainer's changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import add_retry_policy, add_server_arguments
from crunchclient.exceptions import ConfigurationError
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import projects, remote

ACTIONS = {
    "show": "Print the project's settings and its retry policy, reason by reason.",
    "set": "Change the workflow, container, attempts, retry delay, retry policy or visibility "
    "(any of them).",
    "pause": "Hand out no dataset of the project; running ones finish.",
    "resume": "Hand out the project's pending datasets again.",
}


def whole_number(text: str, *, option: str, least: int) -> int:
    """``text`` as an integer of at least ``least``; a one-line error (exit 2) otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise CommandError(
            f"{option} {text!r} is not a whole number of at least {least}.",
            returncode=ConfigurationError.exit_code,
        )
    return value


class Command(ClientCommand):
    help = (
        "Show a project (show), change it (set), or stop and restart handing out its datasets "
        "(pause, resume)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        for name, text in ACTIONS.items():
            action = actions.add_parser(name, help=text, description=text)
            action.add_argument("project", help="The project's slug.")
            if name == "set":
                action.add_argument(
                    "--workflow", type=Path, metavar="FILE",
                    help="A bash script or Snakefile: the project's new workflow.",
                )  # fmt: skip
                action.add_argument(
                    "--container", metavar="IMAGE",
                    help="The image the workflow runs in (docker://NAME:TAG, a .sif path, a "
                    "Charliecloud image); '' for none.",
                )  # fmt: skip
                action.add_argument(
                    "--max-attempts", metavar="N", help="Attempts each dataset gets (at least 1)."
                )
                action.add_argument(
                    "--retry-delay", metavar="SECONDS",
                    help="Seconds before a failed dataset is handed out again (doubles per "
                    "attempt).",
                )  # fmt: skip
                add_retry_policy(action)
                visibility = action.add_mutually_exclusive_group()
                visibility.add_argument(
                    "--public", dest="public", action="store_const", const=True,
                    help="Anonymous visitors may see the project.",
                )  # fmt: skip
                visibility.add_argument(
                    "--private", dest="public", action="store_const", const=False,
                    help="Only roles on the project see it.",
                )  # fmt: skip
            add_server_arguments(action)

    def handle(self, *args: Any, **opts: Any) -> None:
        slug, action = opts["project"], opts["action"]
        if action == "set":
            changes = projects.Changes(
                workflow=opts["workflow"],
                container=opts["container"],
                max_attempts=_given(opts["max_attempts"], "--max-attempts", least=1),
                retry_delay=_given(opts["retry_delay"], "--retry-delay", least=0),
                public=opts["public"],
                retry=tuple(projects.parse_retry(text) for text in opts["retry"]),
            )
            changes.body()  # an unreadable file fails before any call
            self.stdout.write(projects.set_project(remote.connect(opts), slug, changes))
            return
        if action == "show":
            self.stdout.write(projects.show_project(remote.connect(opts), slug))
            return
        paused = action == "pause"
        self.stdout.write(projects.set_paused(remote.connect(opts), slug, paused=paused))


def _given(text: str | None, option: str, *, least: int) -> int | None:
    return None if text is None else whole_number(text, option=option, least=least)
