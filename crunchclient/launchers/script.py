"""The job script of ``crunch submit`` and its private settings file.

``Request`` is what the command was asked; ``prepare`` writes nothing but says what the
script holds and where it and its settings go; ``write`` writes them. The URL, token,
storage settings (when given) and the submitting shell's proxy settings reach the tasks
through a file only its owner can read (mode 0600), which the script sources: never
through a command line, where ``ps`` and the scheduler's accounting show them, nor through
the script, which Slurm copies into its spool and ``scontrol write batch_script`` prints.
"""

from __future__ import annotations

import math
import os
import secrets
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crunchclient.launchers.base import JobSpec, Launcher
from crunchclient.launchers.growth import Growth, Level
from crunchclient.launchers.nodes import Slots, slurm_memory

SUBMIT_DIR = Path("~/.crunch/submit")  # scripts and their private settings files
PROXY_VARIABLES = tuple(
    name
    for upper in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (upper, upper.lower())
)
"""Passed on to the tasks when set: a node whose only route out is a proxy on the login
node reaches the server (and S3) through it, whether or not the scheduler exports the
submitting shell's environment."""


def default_margin(wall: float) -> float:
    """Time kept free at the end of a job: a tenth of it, between 10 s and 5 min."""
    return min(300.0, max(10.0, wall / 10))


@dataclass(frozen=True, kw_only=True)
class Request:
    """What ``crunch submit`` was asked to do, options resolved."""

    project: str
    jobs: int
    wall: float
    margin: float
    url: str
    token: str
    storage_settings: Path | None  # None: not given, or inside a Django project
    directory: Path
    wait: float = 30.0
    cores: int | None = None
    loop_args: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    scheduler: dict[str, Any] = field(default_factory=dict)  # partition, account, ...
    extra: list[str] = field(default_factory=list)
    name: str | None = None
    proxies: dict[str, str] = field(default_factory=dict)  # PROXY_VARIABLES set here
    slots: Slots = field(default_factory=Slots)  # --slots: each task a node of N slots
    timeout: float | None = None  # the loop's --timeout: what one dataset's workflow may run
    memory: int | None = None  # bytes the loop announces (--memory): --mem with --mem-retry
    memory_growth: Growth | None = None  # --mem-retry: tasks with more for out-of-memory
    time_growth: Growth | None = None  # --time-retry: tasks with a longer --timeout

    @property
    def grows(self) -> bool:
        return self.memory_growth is not None or self.time_growth is not None

    def at(self, level: Level) -> Request:
        """This request for the tasks of ``level``: its memory (sbatch --mem and the loop's
        --memory), its --timeout, and a wall time grown alike."""
        changes: dict[str, Any] = {
            "name": f"{self.name or f'crunch-{self.project}'}-{level.name()}"
        }
        if level.memory is not None:
            changes["scheduler"] = {**self.scheduler, "mem": slurm_memory(level.memory)}
            changes["memory"] = level.memory
        if level.seconds is not None:
            changes["timeout"] = float(level.seconds)
            base = self.timeout or level.seconds
            changes["wall"] = max(self.wall, math.ceil(self.wall * level.seconds / base))
        return replace(self, **changes)


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables set in ``environ``, in PROXY_VARIABLES' order."""
    return {name: environ[name] for name in PROXY_VARIABLES if name in environ}


def loop_command(request: Request, *, standalone: bool) -> list[str]:
    """The ``crunch loop`` each task runs: the same Python, so the same crunch."""
    if standalone:
        base = [sys.executable, "-m", "crunchclient.cli", "loop"]
    else:  # inside a Django project: its manage.py and its settings
        base = [sys.executable, str(Path(sys.argv[0]).absolute()), "crunch_loop"]
    command = [
        *base, "--project", request.project,
        "--time-limit", f"{max(1.0, request.wall - request.margin):g}s",
        "--wait", f"{request.wait:g}", "--directory", str(request.directory), "--quiet",
    ]  # fmt: skip
    if request.cores and not request.slots.given:  # with slots: --cores-per-slot
        command += ["--cores", str(request.cores)]
    if request.timeout is not None:
        command += ["--timeout", f"{request.timeout:g}s"]
    if request.memory is not None:  # what the loop announces with its claims
        command += ["--memory", slurm_memory(request.memory)]
    return command + request.slots.loop_args() + request.loop_args


def env_values(request: Request) -> dict[str, str]:
    """The variables of the private file, which the tasks source."""
    values = {"CRUNCH_URL": request.url, "CRUNCH_TOKEN": request.token}
    if request.storage_settings is not None:
        values["CRUNCH_STORAGE_SETTINGS"] = str(request.storage_settings)
    return values | request.proxies


def env_text(request: Request) -> str:
    values = env_values(request)
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "# crunch submit: the settings of its job's tasks. Keep this file private.\n" + (
        "\n".join(lines) + "\n"
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file created readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an older file of that name keeps its mode otherwise


@dataclass(frozen=True)
class Prepared:
    spec: JobSpec
    script: str
    script_path: Path
    env_path: Path


def prepare(request: Request, launcher: Launcher, *, standalone: bool) -> Prepared:
    """The job script and where it and its settings file go; nothing is written yet."""
    name = request.name or f"crunch-{request.project}"
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    folder = SUBMIT_DIR.expanduser().absolute()
    env_path = folder / f"{name}-{stamp}.env"
    spec = JobSpec(
        name=name, tasks=request.jobs, wall_seconds=request.wall, signal_seconds=request.margin,
        command=loop_command(request, standalone=standalone), env_file=env_path,
        env_names=list(env_values(request)),
        setup=request.setup, extra=request.extra,
        runs=request.slots.runs(),
        **request.slots.scheduler(request.scheduler),
    )  # fmt: skip
    return Prepared(spec, launcher.script(spec), folder / f"{name}-{stamp}.sh", env_path)


def write(prepared: Prepared, request: Request) -> None:
    write_private(prepared.env_path, env_text(request))
    write_private(prepared.script_path, prepared.script)


def submitted_message(launcher: Launcher, job_id: str, tasks: int, request: Request) -> str:
    lines = [
        f"Submitted job {job_id}: {tasks} task(s) of "
        f"{request.slots.runs(f'crunch loop --project {request.project}')}."
    ]
    if hint := launcher.watch_hint(job_id):
        lines.append(f"Watch it with: {hint}")
    lines.append(f"Progress: crunch status --project {request.project}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- --keep
