"""main(argv): the ``crunch`` console script.

It configures Django from the storage settings file (``bootstrap``), then runs the same
management command as ``manage.py crunch_<command>``, with the same options.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap

from crunchclient.exceptions import ClientError, exit_codes_help
from crunchclient.printable import printable
from crunchclient.settings import bootstrap, config
from crunchclient.terminal import entry

COMMANDS = {
    "run": "Claim one dataset by its slug and process it.",
    "next": "Claim the next pending dataset (of --project) and process it.",
    "loop": "Process pending datasets until none is left, then print a summary.",
    "retry": "Put failed datasets back to pending (DATASET, or --project P --failed).",
    "submit": "Submit a Slurm job array of 'crunch loop' tasks (--keep M keeps it fed).",
    "add-project": "Create a project (NAME [--workflow FILE]); print its slug.",
    "add-dataset": "Add a dataset to a project (PROJECT NAME); print its slug.",
    "add-item": "Add an item to a dataset or item (PARENT NAME); print its slug.",
    "add-<type>-attribute": "Add an attribute (ITEM KEY VALUE): char, int, float, bool, date, "
    "datetime, url, filesize, lat-long.",
    "import": "Register many datasets: --from-storage PREFIX, --upload DIR..., --from-csv FILE.",
    "status": "Counts by state, throughput, time to finish, live clients, failures.",
    "ls": "List a project's datasets (--state, --reason, --search) as a table.",
    "why": "Say what holds a dataset where it is, and the command that would move it.",
    "files": "List a dataset's stored files with their sizes.",
    "download": "Copy datasets' files from storage (checksum-verified), claiming nothing.",
    "logs": "Print a dataset's workflow log from storage (--follow while it runs).",
    "diagnostics": "Print this machine's diagnostics, as statuses send them.",
    "project": "Show a project (show P), change it (set P --workflow/--max-attempts/"
    "--retry-delay/--retry/--public), or pause P, resume P.",
    "release": "Return a running dataset to pending now (its client was killed or is stuck).",
}
NEEDS_STORAGE = {"run", "next", "loop", "submit", "files", "download", "logs"}
STORAGE_IMPORTS = {"--from-storage", "--upload"}  # the import sources that read storage
# Read the storage settings only when given, never prompt: files then move through the
# server (--transfer server), or submit's tasks do so.
OPTIONAL_STORAGE = {"submit", "run", "next", "loop", "files", "download", "logs"}
ATTRIBUTE = re.compile(r"^add-(?P<type>[a-z-]+)-attribute$")
STANDALONE_HIDDEN = {"--settings", "--pythonpath", "--no-color", "--force-color", "--skip-checks"}


def usage() -> str:
    commands = "\n".join(f"  {name:<21} {text}" for name, text in COMMANDS.items())
    return textwrap.dedent(
        """\
        usage: crunch COMMAND [options]

        Process datasets of a crunch server on this machine: claim a dataset, copy its
        files from storage, run the project's workflow, upload what changed, report.

        commands:
        {commands}

        environment:
          CRUNCH_URL               the server's URL (or --url)
          CRUNCH_TOKEN             a client user's API token (or --token)
          CRUNCH_STORAGE_SETTINGS  TOML or JSON file with the server's storage settings
                                   (or --storage-settings)

        'crunch COMMAND --help' explains every option of a command.

        {exit_codes}
        """
    ).format(commands=commands, exit_codes=exit_codes_help())


def main(argv: list[str] | None = None) -> int:
    """Run ``crunch COMMAND ...``; return the exit code (errors as one line on stderr)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if args[0] in ("--version", "version"):
        import crunch

        sys.stdout.write(f"crunch {crunch.__version__}\n")
        return 0
    name, rest = args[0], args[1:]
    if (attribute := ATTRIBUTE.match(name)) and attribute["type"] in entry.ATTRIBUTE_TYPES:
        name, rest = "add-attribute", [attribute["type"], *rest]
    elif name not in COMMANDS or "<" in name:
        sys.stderr.write(
            f"CommandError: Unknown command {name!r}: "
            f"use one of {', '.join(COMMANDS)} (crunch --help).\n"
        )
        return 2
    try:
        configure(name, rest)
    except ClientError as exc:
        sys.stderr.write(printable(f"CommandError: {exc}\n"))
        return exc.exit_code
    from django.core.management import load_command_class

    command = load_command_class("crunchclient", f"crunch_{name.replace('-', '_')}")
    # Django's project options mean nothing to the standalone script: keep --help short.
    command.suppressed_base_arguments = STANDALONE_HIDDEN
    try:
        command.run_from_argv(["crunch", name, *rest])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def configure(name: str, rest: list[str]) -> None:
    """Configure Django: from the storage settings file, or bare for help and retry."""
    wants_help = any(arg in ("-h", "--help") for arg in rest)
    needs = name in NEEDS_STORAGE or (
        name == "import" and any(arg.split("=")[0] in STORAGE_IMPORTS for arg in rest)
    )
    if not needs or wants_help:
        bootstrap.configure_minimal()
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--storage-settings")
    parser.add_argument("--transfer")
    given = known_path = None
    if name == "files":  # django-crunch 0.1: crunch files DATASET STORAGE_SETTINGS
        for option in ("--url", "--token", "--retry-for", "--jobs"):
            parser.add_argument(option)
        parser.add_argument("positional", nargs="*")
        known, _ = parser.parse_known_args(rest)
        known_path = known.positional[1] if len(known.positional) > 1 else None
        given = known.storage_settings or known_path
    else:
        known, _ = parser.parse_known_args(rest)
        given = known.storage_settings
    if name in OPTIONAL_STORAGE:
        given = given or os.environ.get(config.ENVIRONMENT["storage_settings"], "").strip()
        if known.transfer == "server" or (not given and known.transfer != "direct"):
            bootstrap.configure_minimal()
            return
    path = config.storage_settings_path({"storage_settings": given})
    bootstrap.configure_from_file(os.path.expanduser(path))
