from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from crunchclient.cli.arguments import add_client_arguments
from crunchclient.exceptions import ConfigurationError, Interrupted, StageFailed
from crunchclient.management.base import ClientCommand
from crunchclient.settings.config import resolve
from crunchclient.terminal.dryrun import dry_run
from crunchclient.worker import gpus
from crunchclient.worker.slots import SlotLoop
from crunchclient.worker.worker import Worker


class Command(ClientCommand):
    help = (
        "Process pending datasets one after another (or --slots N at once) until none is "
        "left; a failed dataset does not stop the loop, but the exit code says some failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_client_arguments(parser, command="loop")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["dry_run"]:
            return self.dry_run(opts)
        configs = gpus.slot_configs(resolve(opts))
        loop = Worker(configs[0]) if len(configs) == 1 else SlotLoop(configs)
        summary = loop.run_loop(
            project=opts["project"], max_datasets=opts["max_datasets"],
            time_limit=opts["time_limit"], wait=opts["wait"],
        )  # fmt: skip
        self.stdout.write(summary.summary())
        if summary.interrupted:
            raise CommandError(
                f"Stopped by a signal after {summary.processed} dataset(s).",
                returncode=Interrupted.exit_code,
            )
        if summary.failed or summary.retried:
            waiting = f" ({summary.retried} waiting to retry)" if summary.retried else ""
            raise CommandError(
                f"{summary.failed + summary.retried} of {summary.processed} dataset(s) "
                f"failed{waiting}: see their notes with 'crunch why DATASET'.",
                returncode=StageFailed.exit_code,
            )

    def dry_run(self, opts: dict[str, Any]) -> None:
        report = dry_run(opts)
        self.stdout.write("\n".join(report.lines))
        if report.problems:
            raise CommandError(
                f"Not ready: {', '.join(report.problems)} (see above); nothing was claimed.",
                returncode=ConfigurationError.exit_code,
            )
