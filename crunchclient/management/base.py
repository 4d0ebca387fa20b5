"""ClientCommand, the base of the crunch_* commands, and their logging."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crunchclient.exceptions import ClientError, exit_codes_help
from crunchclient.printable import Formatter, Output


def configure_logging(verbosity: int) -> None:
    """Progress on stdout, warnings and errors on stderr; the level from --verbosity."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("crunchclient")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(formatter)
        root.addHandler(handler)


class ClientCommand(BaseCommand):
    """Base of the crunch_* commands: the exit-code epilog, ClientError -> CommandError, and
    output made printable (``crunchclient.printable``)."""

    # The standalone client has no database or admin to check.
    requires_system_checks: list[str] = []  # noqa: RUF012 (django-stubs: an instance variable)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the server sends reaches a terminal: every line written is made printable.
        self.stdout, self.stderr = Output.around(self.stdout), Output.around(self.stderr)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("epilog", exit_codes_help())
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def execute(self, *args: Any, **opts: Any) -> str | None:
        configure_logging(int(opts.get("verbosity", 1)))
        if opts.get("stdout"):  # call_command(stdout=...): filtered too
            self.stdout = Output(opts.pop("stdout"))
        if opts.get("stderr"):
            self.stderr = Output(opts.pop("stderr"))
        try:
            return super().execute(*args, **opts)
        except ClientError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
