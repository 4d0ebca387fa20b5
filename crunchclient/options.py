"""The options shared by crunch_run, crunch_next and crunch_loop, and ``resolve()``.

``resolve()`` turns parsed options into one frozen ClientConfig: each value from its
option, then the environment, then a prompt when there is a terminal. Nothing below
this module reads Django settings.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crunch.constants import LEASE_SECONDS
from crunchclient import bootstrap, workflows
from crunchclient.connection import START_RETRY_FOR, masked, password_of
from crunchclient.exceptions import ClientError, ConfigurationError, exit_codes_help

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30  # seconds between lease renewals
RETRY_FOR_SECONDS = 900  # seconds a call keeps retrying through an outage

ENVIRONMENT = {
    "url": "CRUNCH_URL",
    "token": "CRUNCH_TOKEN",
    "storage_settings": "CRUNCH_STORAGE_SETTINGS",
}


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything the stages need, resolved once and passed down."""

    url: str
    token: str = field(repr=False)
    storage: Any
    directory: Path
    cores: int = 1
    workflow: str | None = None  # overrides the project's workflow kind
    path: Path | None = None  # a local workflow file instead of the project's
    download: bool = True
    upload: bool = True
    cleanup: bool = False
    use_conda: bool = False
    jobs: int = 8
    quiet: bool = False
    lease_seconds: int = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    retry_for: float = RETRY_FOR_SECONDS
    start_retry_for: float = START_RETRY_FOR  # until the server first answers; --retry-for if given
    holder: str = ""
    python: str = sys.executable  # runs ``python -m snakemake``
    pass_env: tuple[str, ...] = ()  # variables the workflow gets even if they look secret
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """The token, the URL's password and the storage settings' keys and passwords: kept
    out of the workflow's environment and masked in its log and in notes."""


# ---------------------------------------------------------------------------- argument types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1.")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds.") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative.")
    return value


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


def with_env(help_text: str, name: str) -> str:
    return f"{help_text} (env: {ENVIRONMENT[name]})"


# ---------------------------------------------------------------------------- the parser


def add_client_arguments(parser: CommandParser | argparse.ArgumentParser, *, command: str) -> None:
    """Add the options of ``command`` (run, next or loop) to parser."""
    if command == "run":
        parser.add_argument(
            "dataset", help="Slug of the dataset to process, e.g. 'project:dataset'."
        )
    else:
        parser.add_argument("--project", help="Only datasets of this project (its slug).")
    server = parser.add_argument_group("server and storage")
    server.add_argument("--url", help=with_env("URL of the crunch server.", "url"))
    server.add_argument("--token", help=with_env("API token of a client user.", "token"))
    server.add_argument(
        "--storage-settings", metavar="PATH",
        help=with_env(
            "TOML or JSON file with the server's storage settings (standalone 'crunch' only; "
            "inside a Django project its STORAGES are used).", "storage_settings",
        ),
    )  # fmt: skip
    work = parser.add_argument_group("processing")
    work.add_argument(
        "--directory", type=Path, default=Path("crunch-work"),
        help="Working directory; each dataset goes in <directory>/<project>/<dataset>/ "
        "(default ./crunch-work).",
    )  # fmt: skip
    work.add_argument(
        "--cores",
        type=positive_int,
        default=1,
        help="Cores for the workflow (Snakemake --cores; default 1).",
    )
    work.add_argument(
        "--workflow", choices=tuple(workflows.KINDS),
        help="Run the workflow as this kind (a bash script, a Snakefile, or an executable "
        "whose first line picks its interpreter), whatever the project says.",
    )  # fmt: skip
    work.add_argument(
        "--path", type=Path, help="A local workflow file to run instead of the project's."
    )
    work.add_argument("--use-conda", action="store_true", help="Pass --use-conda to Snakemake.")
    work.add_argument(
        "--pass-env", action="append", default=[], metavar="NAME",
        help="Give the workflow this environment variable although it is kept from it "
        "by default (CRUNCH_TOKEN, AWS_*, and any variable holding a key or password of "
        "the storage settings); repeat for several.",
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
    transfer = parser.add_argument_group("transfers")
    transfer.add_argument(
        "--jobs", type=positive_int, default=8, help="Files copied in parallel (default 8)."
    )
    transfer.add_argument("--quiet", action="store_true", help="No progress display for transfers.")
    resilience = parser.add_argument_group("leases and outages")
    resilience.add_argument(
        "--lease", type=positive_int, default=LEASE_SECONDS, metavar="SECONDS",
        help=f"How long the claim lives without a heartbeat (default {LEASE_SECONDS}).",
    )  # fmt: skip
    resilience.add_argument(
        "--heartbeat", type=seconds, default=HEARTBEAT_SECONDS, metavar="SECONDS",
        help=f"Seconds between lease renewals (default {HEARTBEAT_SECONDS}).",
    )  # fmt: skip
    resilience.add_argument(
        "--retry-for", type=seconds, default=None, metavar="SECONDS",
        help="Keep retrying an unreachable server this long before giving up "
        f"(default {RETRY_FOR_SECONDS}; {START_RETRY_FOR:g} until the server first answers).",
    )  # fmt: skip
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


def add_connection_arguments(parser: CommandParser | argparse.ArgumentParser) -> None:
    """The options of commands that only talk to the server (crunch_retry)."""
    parser.add_argument("--url", help=with_env("URL of the crunch server.", "url"))
    parser.add_argument("--token", help=with_env("API token of a client user.", "token"))
    parser.add_argument(
        "--retry-for", type=seconds, default=None, metavar="SECONDS",
        help=f"Keep retrying an unreachable server this long (default {RETRY_FOR_SECONDS}; "
        f"{START_RETRY_FOR:g} until the server first answers).",
    )  # fmt: skip


# ---------------------------------------------------------------------------- resolving


def has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def value_of(
    opts: dict[str, Any], name: str, *, label: str, option: str, secret: bool = False,
    prompt: Callable[[str], str] | None = None,
) -> str:  # fmt: skip
    """The option, else its environment variable, else a prompt, else a clear error."""
    value = opts.get(name) or os.environ.get(ENVIRONMENT[name], "")
    if value:
        return str(value).strip()
    if has_terminal():
        ask = prompt or (getpass.getpass if secret else input)
        value = ask(f"{label}: ").strip()
        if value:
            return value
    raise ConfigurationError(
        f"No {label.lower()} given: pass {option} or set {ENVIRONMENT[name]} "
        "(no terminal to prompt on)."
    )


def resolve_url(opts: dict[str, Any]) -> str:
    url = value_of(opts, "url", label="Server URL", option="--url")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigurationError(
            f"Server URL {masked(url)!r} is not an http(s) URL: "
            "pass e.g. --url http://127.0.0.1:8000/."
        )
    return url


def resolve_token(opts: dict[str, Any]) -> str:
    """The token, refused (without echoing it) when it could not be one HTTP header."""
    token = value_of(opts, "token", label="Token", option="--token", secret=True)
    if any(char.isspace() or not char.isprintable() or not char.isascii() for char in token):
        what = (
            "a newline" if "\n" in token or "\r" in token
            else "a space, a control character or a character that is not ASCII"
        )  # fmt: skip
        raise ConfigurationError(
            f"The token holds {what}: pass the token alone, e.g. "
            '--token "$(cat token.txt)" or CRUNCH_TOKEN=$(cat token.txt).'
        )
    return token


def check_env_names(names: list[str]) -> tuple[str, ...]:
    for name in names:
        if not name or "=" in name or "\x00" in name:
            raise ConfigurationError(
                f"--pass-env {name!r} is not the name of an environment variable: "
                "pass the name alone, e.g. --pass-env AWS_PROFILE."
            )
    return tuple(dict.fromkeys(names))


def storage_settings_path(opts: dict[str, Any]) -> str:
    """Where the standalone client reads its storage settings (option, env, prompt)."""
    return value_of(
        opts, "storage_settings", label="Storage settings file", option="--storage-settings"
    )


def writable_directory(directory: Path) -> Path:
    """Create the working directory and prove we can write in it, before claiming."""
    directory = directory.expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"Working directory {str(directory)!r} is not writable ({exc.strerror}): "
            "pass --directory with a folder you can write to."
        ) from exc
    return directory


def check_kind(kind: str | None) -> None:
    """--workflow KIND needs the kind's tool on this node (Snakemake, bash)."""
    if kind is not None:
        workflows.get(kind).check(f"--workflow {kind}")


def check_workflow_path(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser().absolute()
    if not path.is_file():
        raise ConfigurationError(f"Workflow file {str(path)!r} does not exist: check --path.")
    return path


def default_holder() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def resolve(opts: dict[str, Any]) -> ClientConfig:
    """Build the ClientConfig from parsed options; every error here comes before claiming."""
    if opts.get("storage_settings") and not bootstrap.is_standalone():
        logger.warning(
            "--storage-settings %r is ignored: inside a Django project its STORAGES are used.",
            opts["storage_settings"],
        )
    url = resolve_url(opts)
    token = resolve_token(opts)
    check_kind(opts.get("workflow"))
    path = check_workflow_path(opts.get("path"))
    directory = writable_directory(opts.get("directory") or Path("crunch-work"))
    pass_env = check_env_names(list(opts.get("pass_env") or []))
    storage = bootstrap.get_storage()
    secrets = {token, password_of(url) or "", *bootstrap.secret_values()}
    return ClientConfig(
        url=url,
        token=token,
        storage=storage,
        directory=directory,
        cores=opts.get("cores") or 1,
        workflow=opts.get("workflow"),
        path=path,
        download=opts.get("download", True),
        upload=opts.get("upload", True),
        cleanup=bool(opts.get("cleanup")),
        use_conda=bool(opts.get("use_conda")),
        jobs=opts.get("jobs") or 8,
        quiet=bool(opts.get("quiet")),
        lease_seconds=opts.get("lease") or LEASE_SECONDS,
        heartbeat_seconds=opts.get("heartbeat") or HEARTBEAT_SECONDS,
        retry_for=opts["retry_for"] if opts.get("retry_for") is not None else RETRY_FOR_SECONDS,
        start_retry_for=(
            opts["retry_for"] if opts.get("retry_for") is not None else START_RETRY_FOR
        ),
        holder=default_holder(),
        pass_env=pass_env,
        secrets=frozenset(secret for secret in secrets if secret),
    )


def configure_logging(verbosity: int) -> None:
    """Progress on stdout, warnings and errors on stderr; the level from --verbosity."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("crunchclient")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(formatter)
        root.addHandler(handler)


class ClientCommand(BaseCommand):
    """Base of the crunch_* commands: the exit-code epilog and ClientError -> CommandError."""

    # The standalone client has no database or admin to check.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("epilog", exit_codes_help())
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def execute(self, *args: Any, **opts: Any) -> str | None:
        configure_logging(int(opts.get("verbosity", 1)))
        try:
            return super().execute(*args, **opts)
        except ClientError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
