from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import add_client_arguments
from crunchclient.management.base import ClientCommand
from crunchclient.settings.config import resolve
from crunchclient.worker.worker import Worker


class Command(ClientCommand):
    help = "Claim one dataset by its slug and process it: Setup, Workflow, Upload."

    def add_arguments(self, parser: CommandParser) -> None:
        add_client_arguments(parser, command="run")

    def handle(self, *args: Any, **opts: Any) -> None:
        config = resolve(opts)
        outcome = Worker(config).run_dataset(opts["dataset"])
        self.stdout.write(outcome.summary())
