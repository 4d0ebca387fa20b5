"""Argument types and parser builders of the crunch_* commands (argparse only)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from crunch.constants import LEASE_SECONDS
from crunchclient.server.http import START_RETRY_FOR
from crunchclient.settings import kinds
from crunchclient.settings.config import (
    ENVIRONMENT,
    HEARTBEAT_SECONDS,
    ISOLATIONS,
    MAX_SLOTS,
    RETRY_FOR_SECONDS,
    RUNTIMES,
    TRANSFERS,
)

N = TypeVar("N", int, float)


class Parser(Protocol):
    """A parser or an argument group: what ``add_argument`` is called on."""

    def add_argument(self, *flags: str, **kwargs: Any) -> argparse.Action: ...


# ---------------------------------------------------------------------------- argument types


def number(text: str, convert: Callable[[str], N], *, what: str, least: N, bound: str) -> N:
    """``convert(text)``, refused (as argparse shows it) if it is not one or below least."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}.") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} {bound}.")
    return value


def positive_int(text: str) -> int:
    return number(text, int, what="a whole number", least=1, bound="must be at least 1")


def whole_number(text: str) -> int:
    return number(text, int, what="a whole number", least=0, bound="must not be negative")


def slot_count(text: str) -> int | str:
    """--slots: a number of slots, or 'auto' (fill the node)."""
    if text.strip().lower() == "auto":
        return "auto"
    value = number(text, int, what="a whole number or 'auto'", least=1, bound="must be at least 1")
    if value > MAX_SLOTS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_SLOTS} slots.")
    return value


def seconds(text: str) -> float:
    return number(text, float, what="a number of seconds", least=0.0, bound="must not be negative")


MEMORY = re.compile(r"^[1-9][0-9]*(?:[kmgt]i?b?|b)?$", re.IGNORECASE)


def memory_size(text: str) -> str:
    """A memory size as the container runtimes read it: 512m, 8g, 16GiB."""
    if not MEMORY.match(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size: use e.g. 512m or 8g.")
    return text.strip()


DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$"
)


def duration(text: str) -> float:
    """Parse '2h', '30m', '90s', '1h30m' or plain seconds into seconds."""
    match = DURATION.match(text)
    if not text.strip() or not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use e.g. 2h, 30m, 90s or 1h30m."
        )
    hours, minutes, secs = (float(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + secs


SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")  # Slurm's [D-]HH:MM[:SS]


def wall_time(text: str) -> float:
    """'2h', '90m', '1h30m', '45s', or Slurm's '[D-]HH:MM[:SS]', in seconds.

    A bare number is refused: sbatch reads it as minutes, ``crunch loop`` as seconds.
    """
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write e.g. {text}m or {text}s, or Slurm's 1:30:00."
        )
    match = SLURM_TIME.match(text)
    if match and (":" in text or "-" in text):
        days, first, second, third = (int(part or 0) for part in match.groups())
        if match.group(4) is not None:  # H:M:S
            hours, minutes, secs = first, second, third
        elif "-" in text:  # D-H or D-H:M
            hours, minutes, secs = first, second, 0
        else:  # M:S
            hours, minutes, secs = 0, first, second
        return float(days * 86400 + hours * 3600 + minutes * 60 + secs)
    return duration(text)


def positive_duration(text: str) -> float:
    """A duration (see duration()) longer than zero."""
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s.")
    return value


def add_argument(
    parser: Parser, *flags: str, envvar: str | None = None, **kwargs: Any
) -> argparse.Action:
    """``parser.add_argument``, saying in the help which variable gives the value when the
    option is not passed (``crunchclient.settings.config`` reads it, then prompts)."""
    if envvar:
        kwargs["help"] = f"{kwargs.get('help', '')} (env: {envvar})".lstrip()
    return parser.add_argument(*flags, **kwargs)


def add_url_and_token(parser: Parser) -> None:
    """--url and --token, which every command that talks to the server takes."""
    add_argument(parser, "--url", envvar=ENVIRONMENT["url"], help="URL of the crunch server.")
    add_argument(parser, "--token", envvar=ENVIRONMENT["token"], help="API token of a client user.")


def add_storage_settings(parser: Parser, *, use: str = "", transfers: bool = False) -> None:
    """--storage-settings of the terminal commands that read or write storage, and
    --transfer of those that can move the files through the server instead."""
    add_argument(
        parser,
        "--storage-settings",
        metavar="PATH",
        envvar=ENVIRONMENT["storage_settings"],
        help=f"TOML or JSON storage settings{use}",
    )
    if transfers:
        add_transfer(parser)


def add_transfer(parser: Parser) -> None:
    parser.add_argument(
        "--transfer", choices=TRANSFERS,
        help="How files move: 'direct' with the storage settings (the fast path for trusted "
        "nodes), or 'server' through the crunch server, with only the URL and token "
        "(default: direct when storage settings are given or inside a Django project, "
        "server otherwise).",
    )  # fmt: skip


def add_copy_arguments(parser: Parser, *, copied: str) -> None:
    """--jobs and --quiet of the terminal commands that copy files."""
    parser.add_argument(
        "--jobs", type=positive_int, default=8, help=f"Files {copied} in parallel (default 8)."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress display.")


def add_retry_for(parser: Parser) -> None:
    """--retry-for, of every command that talks to the server."""
    parser.add_argument(
        "--retry-for", type=seconds, default=None, metavar="SECONDS",
        help="Keep retrying an unreachable server this long before giving up "
        f"(default {RETRY_FOR_SECONDS}; {START_RETRY_FOR:g} until the server first answers).",
    )  # fmt: skip


# ---------------------------------------------------------------------------- the parser


def add_client_arguments(parser: argparse.ArgumentParser, *, command: str) -> None:
    """Add the options of ``command`` (run, next or loop) to parser."""
    if command == "run":
        parser.add_argument(
            "dataset", help="Slug of the dataset to process, e.g. 'project:dataset'."
        )
    else:
        parser.add_argument("--project", help="Only datasets of this project (its slug).")
    server = parser.add_argument_group("server and storage")
    add_url_and_token(server)
    add_argument(
        server, "--storage-settings", metavar="PATH", envvar=ENVIRONMENT["storage_settings"],
        help="TOML or JSON file with the server's storage settings (standalone 'crunch' only; "
        "inside a Django project its STORAGES are used).",
    )  # fmt: skip
    add_transfer(server)
    work = parser.add_argument_group("processing")
    work.add_argument(
        "--directory", type=Path, default=Path("crunch-work"),
        help="Working directory; each dataset goes in <directory>/<project>/<dataset>/ "
        "(default ./crunch-work).",
    )  # fmt: skip
    work.add_argument(
        "--cores", type=positive_int, default=None,
        help="Cores for the workflow (Snakemake --cores, CRUNCH_CORES; default 1).",
    )  # fmt: skip
    work.add_argument(
        "--workflow", choices=tuple(kinds.KINDS),
        help="Run the workflow as this kind (a bash script, a Snakefile, or an executable "
        "whose first line picks its interpreter), whatever the project says.",
    )  # fmt: skip
    work.add_argument(
        "--path", type=Path, help="A local workflow file to run instead of the project's."
    )
    work.add_argument("--use-conda", action="store_true", help="Pass --use-conda to Snakemake.")
    work.add_argument(
        "--timeout", type=positive_duration, metavar="DURATION",
        help="Stop a dataset's workflow that runs longer than this, e.g. 90, 90s, 5m, 2h: "
        "the dataset fails with a note naming the limit (and a loop goes on).",
    )  # fmt: skip
    work.add_argument(
        "--pass-env", action="append", default=[], metavar="NAME",
        help="Give the workflow this environment variable although it is kept from it "
        "by default (CRUNCH_TOKEN, AWS_*, and any variable holding a key or password of "
        "the storage settings); repeat for several.",
    )  # fmt: skip
    isolation = parser.add_argument_group("isolation (see 'Isolation and containers' in the docs)")
    isolation.add_argument(
        "--isolation", choices=ISOLATIONS, default="auto",
        help="Where workflows run: 'auto' (the default) in a bubblewrap sandbox where it "
        "works, else unisolated with a warning; 'sandbox' or an error before claiming; "
        "'none' as this user, seeing what the client sees. A project's container applies "
        "in each.",
    )  # fmt: skip
    isolation.add_argument(
        "--runtime", choices=RUNTIMES,
        help="The container runtime for projects that name an image (default: the first "
        f"found of {', '.join(RUNTIMES)}).",
    )  # fmt: skip
    isolation.add_argument(
        "--no-network", dest="network", action="store_false",
        help="No network inside the sandbox or container.",
    )  # fmt: skip
    isolation.add_argument(
        "--bind", action="append", type=Path, default=[], metavar="PATH",
        help="A path the sandboxed or containerised workflow may also write (reference "
        "data, a scratch folder); repeat for several.",
    )  # fmt: skip
    isolation.add_argument(
        "--cache", type=Path, metavar="DIR",
        help="Where images are pulled or converted once per node, and their digests kept "
        "(default ~/.cache/crunch/images).",
    )  # fmt: skip
    isolation.add_argument(
        "--memory", metavar="SIZE", type=memory_size,
        help="A memory limit for each workflow (e.g. 8g): the container runtime's, else a "
        "cgroup the client makes where it may (root on cgroup v1, a delegated v2); claims "
        "announce it, and a Fail reports it.",
    )  # fmt: skip
    work.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=True,
        help="Copy the dataset's files from storage before the workflow (default: yes).",
    )  # fmt: skip
    work.add_argument(
        "--upload", action=argparse.BooleanOptionalAction, default=True,
        help="Upload new and modified files after the workflow (default: yes).",
    )  # fmt: skip
    work.add_argument(
        "--cleanup",
        action="store_true",
        help="Delete the dataset's folder after a successful upload.",
    )
    add_copy_arguments(parser.add_argument_group("transfers"), copied="copied")
    resilience = parser.add_argument_group("leases and outages")
    resilience.add_argument(
        "--lease", type=positive_int, default=LEASE_SECONDS, metavar="SECONDS",
        help=f"How long the claim lives without a heartbeat (default {LEASE_SECONDS}).",
    )  # fmt: skip
    resilience.add_argument(
        "--heartbeat", type=seconds, default=HEARTBEAT_SECONDS, metavar="SECONDS",
        help=f"Seconds between lease renewals (default {HEARTBEAT_SECONDS}).",
    )  # fmt: skip
    add_retry_for(resilience)
    if command == "loop":
        limits = parser.add_argument_group("loop")
        limits.add_argument(
            "--max-datasets", type=positive_int, metavar="N", help="Stop after N datasets."
        )
        limits.add_argument(
            "--time-limit", type=duration, metavar="DURATION",
            help="Stop claiming when too little of this time is left, e.g. 2h, 30m, 90s "
            "(for batch jobs).",
        )  # fmt: skip
        limits.add_argument(
            "--wait", type=seconds, metavar="SECONDS", default=None,
            help="When nothing is pending but other clients still hold datasets, check again "
            "every SECONDS instead of stopping, so datasets a lost client leaves behind are "
            "picked up; stop when none is pending or running.",
        )  # fmt: skip
        limits.add_argument(
            "--dry-run", "-n", action="store_true",
            help="Claim nothing: say which datasets would be claimed first and why, and whether "
            "the workflow's tool, the storage and the working directory are ready; exit 2 "
            "when one is not (like snakemake -n).",
        )  # fmt: skip
        add_slot_arguments(parser.add_argument_group("whole nodes (see 'Whole nodes' in the docs)"))


def add_slot_arguments(group: Parser) -> None:
    """--slots and what each slot gets: cores, GPUs, memory."""
    group.add_argument(
        "--slots", type=slot_count, default=1, metavar="N|auto",
        help="Run up to N datasets at once in this one process, each in a slot with its own "
        "folder, workflow and statuses; 'auto' fills the node: its CPUs divided by "
        "--cores-per-slot, at most its GPUs divided by --gpus-per-slot (default 1).",
    )  # fmt: skip
    group.add_argument(
        "--cores-per-slot", type=positive_int, metavar="C",
        help="Each slot's workflow gets C cores (--cores, CRUNCH_CORES).",
    )  # fmt: skip
    group.add_argument(
        "--gpus-per-slot", type=whole_number, default=0, metavar="G",
        help="Each slot gets G GPUs of its own, from CUDA_VISIBLE_DEVICES, else "
        "SLURM_STEP_GPUS/SLURM_JOB_GPUS, else GPU_DEVICE_ORDINAL/ROCR_VISIBLE_DEVICES; its "
        "workflow sees them in CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and CRUNCH_GPUS.",
    )  # fmt: skip
    group.add_argument(
        "--mem-per-slot", type=memory_size, metavar="SIZE",
        help="Each slot's workflow's memory limit (--memory), where the runtime enforces one.",
    )  # fmt: skip


def add_retry_policy(parser: Parser) -> None:
    """``--retry REASON=...`` of ``crunch add-project`` and ``crunch project set``."""
    parser.add_argument(
        "--retry", action="append", default=[], metavar="REASON=RULE",
        help="How a failure of REASON is retried, over the default policy: retry or never; "
        "free (the attempt is given back) or spend; delay=SECONDS or delay=backoff (the retry "
        "delay doubled per attempt). E.g. out-of-memory=retry,delay=600, exit-code=never; "
        "REASON=default drops the project's rule. Repeat for several reasons.",
    )  # fmt: skip


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of commands that only talk to the server (crunch_retry)."""
    add_url_and_token(parser)
    add_retry_for(parser)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--url, --token, --retry-for; and 0.1's --verbose/--no-verbose, accepted for its scripts."""
    add_connection_arguments(parser)
    parser.add_argument(
        "--verbose", action=argparse.BooleanOptionalAction, default=True,
        help=argparse.SUPPRESS,  # django-crunch 0.1's option: what is made is always printed
    )  # fmt: skip


def add_result_arguments(parser: Parser) -> None:
    """--where, --sort and --columns of ``crunch ls`` and ``crunch export``: the server
    reads them (docs/how-it-works/results.md)."""
    parser.add_argument(
        "--where", action="append", default=[], metavar="FILTER",
        help="Only datasets whose result passes, e.g. 'score>0.9', 'site=north', 'name~abc' "
        "(contains); operators = != < <= > >= ~. Repeat for several (all must hold).",
    )  # fmt: skip
    parser.add_argument(
        "--sort", metavar="[-]KEY",
        help="Sort by a result (or slug); '-' before it for descending, e.g. -score. "
        "Datasets without it come last.",
    )  # fmt: skip
    parser.add_argument(
        "--columns", metavar="KEY,KEY",
        help="The results to show, comma-separated, in that order (default: all, by name).",
    )  # fmt: skip


def sort_attached(argv: list[str]) -> list[str]:
    """``--sort -score`` as ``--sort=-score``: argparse reads a lone value that starts with
    '-' as an option, and the descending sort is written that way."""
    fixed: list[str] = []
    taken = False
    for arg in argv:
        if taken and arg.startswith("-") and arg != "--" and not arg.startswith("--"):
            fixed[-1] = f"--sort={arg}"
        else:
            fixed.append(arg)
        taken = arg == "--sort"
    return fixed
