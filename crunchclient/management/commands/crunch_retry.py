from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import add_connection_arguments
from crunchclient.exceptions import ConfigurationError
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import remote, retry


class Command(ClientCommand):
    help = "Put failed datasets back to pending: one by slug, or every failed one of a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "dataset", nargs="?", help="Slug of a failed dataset, e.g. 'project:dataset'."
        )
        parser.add_argument(
            "--project", help="Retry datasets of this project (its slug); needs --failed."
        )
        parser.add_argument(
            "--failed", action="store_true", help="With --project: every failed dataset."
        )
        add_connection_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        dataset, project = opts["dataset"], opts["project"]
        if bool(dataset) == bool(project) or (project and not opts["failed"]):
            raise CommandError(
                "Name one dataset (crunch retry DATASET) or one project with --failed "
                "(crunch retry --project P --failed).",
                returncode=ConfigurationError.exit_code,
            )
        connection = remote.connect(opts)
        self.stdout.write(retry.retry(connection, dataset=dataset, project=project))
