from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any, cast

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import (
    add_result_arguments,
    add_server_arguments,
    sort_attached,
)
from crunchclient.exceptions import ConfigurationError, Interrupted
from crunchclient.management.base import ClientCommand
from crunchclient.terminal import export, remote
from crunchclient.transfer.progress import size_text


class Command(ClientCommand):
    help = (
        "Write a project's results as CSV, JSON Lines or Parquet, one row per dataset: to "
        "stdout, or to --dest through a partial file renamed when complete."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        super().run_from_argv(sort_attached(argv))

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument(
            "--format", choices=export.FORMATS, default="csv",
            help="csv (default), jsonl (JSON Lines) or parquet (needs pip install "
            "'django-crunch[parquet]').",
        )  # fmt: skip
        parser.add_argument(
            "--dest", type=Path, metavar="FILE",
            help="Write to FILE (replaced only once the export is complete); default stdout.",
        )  # fmt: skip
        add_result_arguments(parser)
        add_server_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        dest: Path | None = opts["dest"].expanduser() if opts["dest"] else None
        out = None if dest else self.binary_stdout(opts["format"])
        try:
            export.export(
                remote.connect(opts), opts["project"], format=opts["format"], out=out,
                dest=dest, where=opts["where"], columns=opts["columns"], sort=opts["sort"],
            )  # fmt: skip
        except BrokenPipeError:  # crunch export ... | head: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        except KeyboardInterrupt:
            kept = f": {opts['dest']} was not written" if dest else ""
            raise Interrupted(f"Export interrupted{kept}.") from None
        if dest is not None:
            self.stdout.write(f"Wrote {dest} ({size_text(dest.stat().st_size)}).")

    def binary_stdout(self, format: str) -> IO[bytes]:
        """The bytes under stdout: the export is written as the server sent it."""
        stream = cast(Any, self.stdout._out)
        binary = getattr(stream, "buffer", None)
        if binary is None:
            raise ConfigurationError("This output takes no bytes: pass --dest FILE.")
        if format == "parquet" and stream.isatty():
            raise ConfigurationError(
                "Parquet is binary: pass --dest FILE, or redirect stdout to a file."
            )
        stream.flush()
        return cast(IO[bytes], binary)
