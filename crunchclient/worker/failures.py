"""Why a run failed: the reason (crunch.choices.FailReason) and its detail that every Fail
carries, read from what the client saw; and the memory and time the run had.

- exit-code: the workflow exited non-zero (detail: the code);
- signal: a signal ended it (detail: its name): a negative return code, or a shell's
  128+N;
- out-of-memory: the kernel's OOM killer, seen as the ``oom_kill`` counter of the
  client's cgroup going up while the workflow ran (cgroup v2 ``memory.events``, v1
  ``memory.oom_control``), detail ``oom_kill``; a SIGKILL (or exit 137) when the counter
  cannot be read, or the workflow ran in a container runtime's own cgroup, is
  out-of-memory with detail ``probably``;
- time-limit: ``--timeout`` stopped it (detail ``timeout``); the loop's ``--time-limit``
  or the batch job's end stops it as a release with detail ``wall-time`` (no attempt
  spent);
- input-missing: the dataset's folder is missing or empty (exceptions.InputMissing);
- tool-missing: exit 127 ("command not found", detail: the command), the workflow's
  interpreter or runtime missing, or the node's configuration refusing the workflow;
- transfer: storage or the network failed after their retries (Setup, Upload);
- cancelled: SIGTERM/SIGINT (a release); lost-lease: the server's sweeper records it.

The counters are per cgroup, and every slot of a loop shares the client's: an OOM kill in
one slot while another's workflow also fails reads as that one's too.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crunch.choices import WALL_TIME, FailReason
from crunch.choices import Stage as StageNumber
from crunchclient.exceptions import (
    ConfigurationError,
    InputMissing,
    Interrupted,
    ServerError,
    TransferError,
)
from crunchclient.settings.config import ClientConfig
from crunchclient.settings.sizes import memory_bytes

logger = logging.getLogger(__name__)

PROBABLY = "probably"
OOM_KILL = "oom_kill"
TIMEOUT = "timeout"
SHELL_SIGNALS = 128  # a shell's exit status for a child that a signal ended: 128 + N
COMMAND_NOT_FOUND = 127
NOT_FOUND = re.compile(
    rb"(?:^|\n)(?:[^\n:]*: )?(?:line \d+: )?([^\s:]+): "
    rb"(?:command not found|No such file or directory)"
)
"""bash's "script.sh: line 3: samtools: command not found" (or sh's "...: not found")."""


@dataclass(frozen=True)
class Failure:
    """A Fail's reason and its detail, as the status carries them."""

    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


UNKNOWN = Failure(FailReason.UNKNOWN)
CANCELLED = Failure(FailReason.CANCELLED)
WALL = Failure(FailReason.TIME_LIMIT, WALL_TIME)


class Failed:
    """A mixin of the client's errors that know their reason (``failure``)."""

    failure: Failure = UNKNOWN


class OutOfTime(Failed, Interrupted):
    """The loop's --time-limit ended while a workflow ran: stopped, its dataset released
    (time-limit, wall-time: no attempt spent)."""

    failure = WALL


# ---------------------------------------------------------------------------- the OOM counter


def cgroup_files(proc_cgroup: str, mountinfo: str) -> list[Path]:
    """The files that count OOM kills in the cgroup of the process whose /proc/PID/cgroup
    and mountinfo are given: v2 ``memory.events``, v1 ``memory.oom_control``, in that order
    (each counts the kills of the cgroups below too). Files that may not exist."""
    mounts: dict[str, tuple[str, str]] = {}  # "cgroup2" or "memory": (mount root, mount point)
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if len(fields) < 5 or len(kinds) < 3:
            continue
        if kinds[0] == "cgroup2":
            mounts.setdefault("cgroup2", (fields[3], fields[4]))
        elif kinds[0] == "cgroup" and "memory" in kinds[2].split(","):
            mounts.setdefault("memory", (fields[3], fields[4]))
    found: list[Path] = []
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers and "cgroup2" in mounts:
            found.append(mounted(mounts["cgroup2"], path) / "memory.events")
        elif "memory" in controllers.split(",") and "memory" in mounts:
            found.append(mounted(mounts["memory"], path) / "memory.oom_control")
    return found


def mounted(mount: tuple[str, str], path: str) -> Path:
    """Where cgroup ``path`` is seen under a mount of the hierarchy (root, point)."""
    root, point = mount
    inside = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
    return Path(point) / ("" if inside == "." else inside.lstrip("/"))


def read_oom_kills(path: Path) -> int | None:
    """The ``oom_kill`` count of a ``memory.events`` or ``memory.oom_control`` file; None
    when it cannot be read (no such file, or a kernel that does not count)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == OOM_KILL and value.strip().isdigit():
            return int(value)
    return None


class OomCounter:
    """The OOM kills of the client's cgroup, read before and after a workflow runs."""

    def __init__(self, files: list[Path] | None = None) -> None:
        if files is None:
            files = own_cgroup_files()
        self.files = files

    def read(self) -> int | None:
        """The first readable count; None when none is (then a SIGKILL is "probably")."""
        for path in self.files:
            if (count := read_oom_kills(path)) is not None:
                return count
        return None


def own_cgroup_files() -> list[Path]:
    try:
        proc = Path("/proc/self/cgroup").read_text(encoding="utf-8")
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    return cgroup_files(proc, mountinfo)


# ---------------------------------------------------------------------------- classification


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def of_exit(
    code: int, *, oom_before: int | None = None, oom_after: int | None = None,
    own_cgroup: bool = True, stderr: bytes = b"",
) -> Failure:  # fmt: skip
    """The reason of a workflow that exited with ``code`` (non-zero; negative: the signal
    that ended it, as subprocess says), given the cgroup's OOM kills before and after it
    ran. ``own_cgroup``: False when a container runtime ran it in a cgroup of its own,
    whose kills the client's counter does not see."""
    counted = own_cgroup and oom_before is not None and oom_after is not None
    if counted and oom_after > oom_before:  # type: ignore[operator]
        return Failure(FailReason.OUT_OF_MEMORY, OOM_KILL)
    killed = code == -signal.SIGKILL or code == SHELL_SIGNALS + signal.SIGKILL
    if killed and not counted:
        return Failure(FailReason.OUT_OF_MEMORY, PROBABLY)
    if code < 0:
        return Failure(FailReason.SIGNAL, signal_name(-code))
    if code == COMMAND_NOT_FOUND:
        found = NOT_FOUND.findall(stderr)
        return Failure(FailReason.TOOL_MISSING, found[-1].decode(errors="replace") if found else "")
    if SHELL_SIGNALS < code < SHELL_SIGNALS + signal.NSIG:
        return Failure(FailReason.SIGNAL, signal_name(code - SHELL_SIGNALS))
    return Failure(FailReason.EXIT_CODE, str(code))


def of_error(exc: BaseException, stage: StageNumber) -> Failure:  # noqa: PLR0911 (a table)
    """The reason of a stage's exception: its own when it knows it, else by its kind and
    the stage (Setup's and Upload's errors are storage's or the network's)."""
    if isinstance(exc, Failed):
        return exc.failure
    if isinstance(exc, InputMissing):
        return Failure(FailReason.INPUT_MISSING)
    if isinstance(exc, ConfigurationError):
        return Failure(FailReason.TOOL_MISSING)
    if isinstance(exc, (TransferError, ServerError)):
        return Failure(FailReason.TRANSFER)
    if stage == StageNumber.WORKFLOW and isinstance(exc, FileNotFoundError):
        return Failure(FailReason.TOOL_MISSING, Path(str(exc.filename or "")).name)
    if stage != StageNumber.WORKFLOW and isinstance(exc, OSError):
        return Failure(FailReason.TRANSFER)
    return UNKNOWN


# ---------------------------------------------------------------------------- what a run has


def task_memory(config: ClientConfig, environ: Mapping[str, str] | None = None) -> int | None:
    """Bytes of memory one dataset's workflow has: --memory (or --mem-per-slot), else the
    Slurm job's memory on this node (SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU times its
    CPUs) shared by the loop's slots; None when nothing says."""
    if config.memory:
        return memory_bytes(config.memory)
    env = os.environ if environ is None else environ
    megabytes = slurm_number(env, "SLURM_MEM_PER_NODE")
    if megabytes is None and (per_cpu := slurm_number(env, "SLURM_MEM_PER_CPU")) is not None:
        cpus = slurm_number(env, "SLURM_CPUS_ON_NODE") or slurm_number(env, "SLURM_CPUS_PER_TASK")
        megabytes = per_cpu * (cpus or 1)
    if not megabytes:  # 0: the node's memory, which Slurm does not say here
        return None
    slots = config.slots if isinstance(config.slots, int) and config.slots > 1 else 1
    return megabytes * 1024**2 // slots


def slurm_number(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    return int(text) if text.isdigit() else None


def task_seconds(config: ClientConfig) -> int | None:
    """Seconds one dataset's workflow may run: --timeout; None when unlimited."""
    return None if config.timeout is None else int(config.timeout)
