"""ClientConfig, and ``resolve()``: options, then the environment, then a prompt.

``resolve()`` turns parsed options into one frozen ClientConfig: each value from its
option, then the environment, then a prompt when there is a terminal. A ClientConfig can
also be built in code, without argparse. Nothing below this module reads Django settings.
"""

from __future__ import annotations

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
from typing import Any, Literal

from crunch.constants import LEASE_SECONDS
from crunchclient.exceptions import ConfigurationError
from crunchclient.server.http import START_RETRY_FOR, masked, password_of
from crunchclient.settings import bootstrap, kinds
from crunchclient.settings.secrets import secret_values

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30  # seconds between lease renewals
RETRY_FOR_SECONDS = 900  # seconds a call keeps retrying through an outage

ISOLATIONS = ("auto", "sandbox", "none")
"""Where the workflow runs (--isolation): the sandbox where it works, the sandbox or an
error, or unisolated. A project's container applies in each."""
RUNTIMES = ("apptainer", "podman", "docker", "charliecloud")
"""Container runtimes (--runtime), in the order they are looked for."""
TRANSFERS = ("direct", "server")
"""How files move: with the storage settings, or through the crunch server."""
MAX_SLOTS = 256
"""The most datasets one loop runs at once (--slots): its claims are renewed in one call."""

ENVIRONMENT = {
    "url": "CRUNCH_URL",
    "token": "CRUNCH_TOKEN",
    "storage_settings": "CRUNCH_STORAGE_SETTINGS",
}


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Everything the stages need, resolved once and passed down.

    ``resolve()`` builds one from a command's options; code builds one directly, e.g.
    ``ClientConfig(url=..., token=..., storage=default_storage, directory=Path("work"))``.
    """

    url: str
    token: str = field(repr=False)
    storage: Any
    """The Django storage of direct transfers; None with ``transfer="server"``."""
    directory: Path
    transfer: str = "direct"  # or "server": files through the crunch server (TRANSFERS)
    cores: int = 1
    workflow: str | None = None  # overrides the project's workflow kind
    path: Path | None = None  # a local workflow file instead of the project's
    download: bool = True
    upload: bool = True
    cleanup: bool = False
    use_conda: bool = False
    timeout: float | None = None  # seconds one dataset's workflow may run (--timeout)
    jobs: int = 8
    quiet: bool = False
    lease_seconds: int = LEASE_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    retry_for: float = RETRY_FOR_SECONDS
    start_retry_for: float = START_RETRY_FOR  # until the server first answers; --retry-for if given
    # A lambda: default_holder is defined below this class.
    holder: str = field(default_factory=lambda: default_holder())  # noqa: PLW0108
    python: str = sys.executable  # runs ``python -m snakemake``
    pass_env: tuple[str, ...] = ()  # variables the workflow gets even if they look secret
    isolation: str = "auto"  # ISOLATIONS
    runtime: str | None = None  # a container runtime of RUNTIMES; None: the first found
    network: bool = True  # --no-network: none inside the sandbox or container
    binds: tuple[Path, ...] = ()  # paths the workflow may also write (--bind)
    cache: Path | None = None  # images pulled or converted, and their digests (--cache)
    memory: str | None = None  # a memory limit for runtimes that enforce one (--memory)
    slots: int | Literal["auto"] = 1  # datasets one loop runs at once (--slots)
    gpus_per_slot: int = 0  # each slot's own GPUs (--gpus-per-slot); 0: no split
    slot: int | None = None  # this slot's number (0-based) in a loop of several
    gpus: tuple[str, ...] | None = None  # this slot's GPU ids; None: the node's, as they are
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """The token, the URL's password and the storage settings' keys and passwords: kept
    out of the workflow's environment and masked in its log and in notes. The token and
    the URL's password are always among them."""

    def __post_init__(self) -> None:
        check_heartbeat(self.heartbeat_seconds, self.lease_seconds)
        own = {self.token, password_of(self.url) or ""} - {""}
        if not own <= self.secrets:
            object.__setattr__(self, "secrets", self.secrets | own)


def check_heartbeat(heartbeat: float, lease: int) -> None:
    """A lease renewed less often than it lasts expires mid-run, every time."""
    if heartbeat >= lease:
        raise ConfigurationError(
            f"--heartbeat {heartbeat:g} is not shorter than --lease {lease}: every lease would "
            f"expire before it is renewed; pass a --heartbeat below --lease (e.g. {lease / 10:g})."
        )


def per_slot(opts: dict[str, Any], name: str, twin: str) -> Any:
    """``--cores`` or ``--memory``, else its per-slot twin: one value, not two."""
    whole, slot = opts.get(name), opts.get(twin)
    if slot is None:
        return whole
    if whole is not None and whole != slot:
        raise ConfigurationError(
            f"--{name} {whole} and --{twin.replace('_', '-')} {slot} disagree: pass one of "
            "them (each slot's workflow gets it)."
        )
    return slot


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
        kinds.get(kind).check(f"--workflow {kind}")


def check_workflow_path(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser().absolute()
    if not path.is_file():
        raise ConfigurationError(f"Workflow file {str(path)!r} does not exist: check --path.")
    return path


def check_binds(paths: list[Path]) -> tuple[Path, ...]:
    """--bind paths: existing folders or files, made absolute."""
    checked = []
    for path in paths:
        absolute = Path(os.path.abspath(os.path.expanduser(path)))
        if not absolute.exists():
            raise ConfigurationError(
                f"--bind {str(path)!r} does not exist: name a folder the workflow may write."
            )
        checked.append(absolute)
    return tuple(dict.fromkeys(checked))


def transfer_mode(opts: dict[str, Any]) -> str:
    """--transfer, else direct when Django has storage settings (a file, or a Django
    project's STORAGES), server when the standalone client was given none."""
    transfer = opts.get("transfer") or ("server" if bootstrap.PROCESS.minimal else "direct")
    if transfer == "direct" and bootstrap.PROCESS.minimal:
        raise ConfigurationError(
            "--transfer direct needs the storage settings: pass --storage-settings or set "
            f"{ENVIRONMENT['storage_settings']}, or leave out --transfer."
        )
    return str(transfer)


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
    lease = opts.get("lease") or LEASE_SECONDS
    heartbeat = opts["heartbeat"] if opts.get("heartbeat") is not None else HEARTBEAT_SECONDS
    check_heartbeat(heartbeat, lease)  # before prompting for anything
    url = resolve_url(opts)
    token = resolve_token(opts)
    check_kind(opts.get("workflow"))
    path = check_workflow_path(opts.get("path"))
    directory = writable_directory(opts.get("directory") or Path("crunch-work"))
    pass_env = check_env_names(list(opts.get("pass_env") or []))
    transfer = transfer_mode(opts)
    storage = bootstrap.get_storage() if transfer == "direct" else None
    secrets = {token, password_of(url) or "", *secret_values(standalone=bootstrap.is_standalone())}
    return ClientConfig(
        url=url,
        token=token,
        storage=storage,
        directory=directory,
        transfer=transfer,
        cores=per_slot(opts, "cores", "cores_per_slot") or 1,
        workflow=opts.get("workflow"),
        path=path,
        download=opts.get("download", True),
        upload=opts.get("upload", True),
        cleanup=bool(opts.get("cleanup")),
        use_conda=bool(opts.get("use_conda")),
        timeout=opts.get("timeout"),
        jobs=opts.get("jobs") or 8,
        quiet=bool(opts.get("quiet")),
        lease_seconds=lease,
        heartbeat_seconds=heartbeat,
        retry_for=opts["retry_for"] if opts.get("retry_for") is not None else RETRY_FOR_SECONDS,
        start_retry_for=(
            opts["retry_for"] if opts.get("retry_for") is not None else START_RETRY_FOR
        ),
        pass_env=pass_env,
        isolation=opts.get("isolation") or "auto",
        runtime=opts.get("runtime"),
        network=opts.get("network", True),
        binds=check_binds(opts.get("bind") or []),
        cache=opts["cache"].expanduser().absolute() if opts.get("cache") else None,
        memory=per_slot(opts, "memory", "mem_per_slot"),
        slots=opts.get("slots") or 1,
        gpus_per_slot=opts.get("gpus_per_slot") or 0,
        secrets=frozenset(secret for secret in secrets if secret),
    )
