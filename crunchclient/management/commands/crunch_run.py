from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from crunchclient import options, run


class Command(options.ClientCommand):
    help = "Claim one dataset by its slug and process it: Setup, Workflow, Upload."

    def add_arguments(self, parser: CommandParser) -> None:
        options.add_client_arguments(parser, command="run")

    def handle(self, *args: Any, **opts: Any) -> None:
        config = options.resolve(opts)
        outcome = run.run_dataset(config, opts["dataset"])
        self.stdout.write(outcome.summary())
