"""worker/failures.py: how the client reads why a run failed, and what memory and time it had."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest

from crunch.choices import Stage
from crunchclient.exceptions import (
    ConfigurationError,
    InputMissing,
    ServerError,
    TransferError,
    UnsafePathError,
)
from crunchclient.settings import kinds
from crunchclient.settings.config import ClientConfig
from crunchclient.worker import failures
from crunchclient.worker.deadline import Deadline
from crunchclient.worker.failures import Failure, OomCounter, cgroup_files, of_error, of_exit

# /proc/self/mountinfo and /proc/self/cgroup of a cgroup v1 machine (this test machine's
# kind), of a pure cgroup v2 one (systemd's), and of a container that sees its own cgroup
# as the root of the mount.
MOUNTS_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
CGROUP_V1 = "9:name=systemd:/\n4:memory:/slurm/uid_0/job_7/step_batch\n1:cpu:/\n0::/\n"
MOUNTS_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
CGROUP_V2 = "0::/user.slice/user-1000.slice/session-3.scope\n"
MOUNTS_NESTED = "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
CGROUP_NESTED = "0::/kubepods/pod1/box\n"

EVENTS = "low 0\nhigh 0\nmax 12\noom 2\noom_kill {}\noom_group_kill 0\n"
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"


def test_the_counters_of_the_clients_cgroup_are_found_from_proc() -> None:
    assert cgroup_files(CGROUP_V1, MOUNTS_V1) == [
        Path("/sys/fs/cgroup/memory/slurm/uid_0/job_7/step_batch/memory.oom_control"),
        Path("/sys/fs/cgroup/unified/memory.events"),  # v2 holds no memory controller here
    ]
    assert cgroup_files(CGROUP_V2, MOUNTS_V2) == [
        Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/memory.events")
    ]
    assert cgroup_files(CGROUP_NESTED, MOUNTS_NESTED) == [Path("/sys/fs/cgroup/box/memory.events")]
    assert cgroup_files("", "") == []


def test_memory_events_of_cgroup_v2_are_read_from_a_file(tmp_path: Path) -> None:
    events = tmp_path / "memory.events"
    events.write_text(EVENTS.format(0))
    counter = OomCounter([tmp_path / "absent", events])
    before = counter.read()
    events.write_text(EVENTS.format(1))  # the kernel killed one process of the cgroup

    assert (before, counter.read()) == (0, 1)
    assert of_exit(1, oom_before=before, oom_after=counter.read()) == Failure(
        "out-of-memory", "oom_kill"
    )


def test_memory_oom_control_of_cgroup_v1_is_read(tmp_path: Path) -> None:
    control = tmp_path / "memory.oom_control"
    control.write_text(OOM_CONTROL.format(3))
    assert OomCounter([control]).read() == 3
    control.write_text("oom_kill_disable 0\nunder_oom 0\n")  # a kernel before 4.13
    assert OomCounter([control]).read() is None
    assert OomCounter([]).read() is None


def test_this_machines_counter_is_read_where_it_has_one() -> None:
    count = OomCounter().read()
    assert count is None or count >= 0


@pytest.mark.parametrize(
    ("code", "before", "after", "expected"),
    [
        (3, 0, 0, Failure("exit-code", "3")),
        (1, None, None, Failure("exit-code", "1")),
        (-signal.SIGKILL, 0, 0, Failure("signal", "SIGKILL")),  # killed, not by the kernel's OOM
        (137, 0, 0, Failure("signal", "SIGKILL")),  # the same, through a shell
        (-signal.SIGKILL, 0, 1, Failure("out-of-memory", "oom_kill")),
        (137, 4, 5, Failure("out-of-memory", "oom_kill")),
        (1, 4, 5, Failure("out-of-memory", "oom_kill")),  # Snakemake: its job was killed
        (-signal.SIGKILL, None, None, Failure("out-of-memory", "probably")),
        (137, None, None, Failure("out-of-memory", "probably")),
        (-signal.SIGSEGV, 0, 0, Failure("signal", "SIGSEGV")),
        (139, 0, 0, Failure("signal", "SIGSEGV")),
        (143, None, None, Failure("signal", "SIGTERM")),
        (255, 0, 0, Failure("exit-code", "255")),
    ],
)
def test_an_exit_is_classified(
    code: int, before: int | None, after: int | None, expected: Failure
) -> None:
    assert of_exit(code, oom_before=before, oom_after=after) == expected


def test_a_container_runtimes_own_cgroup_makes_a_sigkill_probably_out_of_memory() -> None:
    assert of_exit(137, oom_before=0, oom_after=0, own_cgroup=False) == Failure(
        "out-of-memory", "probably"
    )


@pytest.mark.parametrize(
    ("stderr", "tool"),
    [
        (b"/w/.crunch/script.sh: line 3: samtools: command not found\n", "samtools"),
        (b"working\nscript.sh: line 1: ./missing.py: No such file or directory\n", "./missing.py"),
        (b"", ""),
    ],
)
def test_exit_127_is_a_missing_tool_named_from_stderr(stderr: bytes, tool: str) -> None:
    assert of_exit(127, oom_before=0, oom_after=0, stderr=stderr) == Failure("tool-missing", tool)


@pytest.mark.parametrize(
    ("error", "stage", "expected"),
    [
        (InputMissing("empty"), Stage.SETUP, Failure("input-missing")),
        (TransferError("refused"), Stage.UPLOAD, Failure("transfer")),
        (ServerError("unreachable"), Stage.SETUP, Failure("transfer")),
        (UnsafePathError("escape"), Stage.SETUP, Failure("transfer")),
        (PermissionError(errno.EACCES, "Permission denied"), Stage.UPLOAD, Failure("transfer")),
        (OSError(errno.ENOSPC, "No space left"), Stage.SETUP, Failure("transfer")),
        (FileNotFoundError(errno.ENOENT, "No such file", "/usr/bin/R"), Stage.WORKFLOW,
         Failure("tool-missing", "R")),
        (ConfigurationError("no workflow"), Stage.SETUP, Failure("tool-missing")),
        (ValueError("a bug"), Stage.WORKFLOW, Failure("unknown")),
        (failures.OutOfTime(), Stage.WORKFLOW, Failure("time-limit", "wall-time")),
    ],
)  # fmt: skip
def test_a_stages_error_is_classified(
    error: BaseException, stage: Stage, expected: Failure
) -> None:
    assert of_error(error, stage) == expected


def config(**fields: object) -> ClientConfig:
    return ClientConfig(url="http://x", token="t", storage=None, directory=Path("w"), **fields)  # type: ignore[arg-type]


def test_the_memory_a_run_has() -> None:
    assert failures.task_memory(config(memory="2g"), {"SLURM_MEM_PER_NODE": "1000"}) == 2 * 1024**3
    assert failures.task_memory(config(), {"SLURM_MEM_PER_NODE": "1024"}) == 1024**3
    assert failures.task_memory(
        config(), {"SLURM_MEM_PER_CPU": "512", "SLURM_CPUS_ON_NODE": "4"}
    ) == (2 * 1024**3)
    assert failures.task_memory(config(slots=4), {"SLURM_MEM_PER_NODE": "4096"}) == 1024**3
    assert failures.task_memory(config(), {"SLURM_MEM_PER_NODE": "0"}) is None  # the whole node
    assert failures.task_memory(config(), {}) is None
    assert failures.task_seconds(config(timeout=90.5)) == 90
    assert failures.task_seconds(config()) is None


def test_a_signal_near_the_jobs_end_is_its_wall_time() -> None:
    now = [1000.0]
    ending = Deadline(ends_at=1060.0, limit_at=1060.0, clock=lambda: now[0])
    assert ending.near_end()
    far = Deadline(ends_at=5000.0, limit_at=5000.0, job_at=6000.0, clock=lambda: now[0])
    assert not far.near_end()
    assert Deadline(ends_at=1300.0, job_at=1300.0, clock=lambda: now[0]).near_end()
    assert not Deadline(ends_at=None).near_end()


def test_snakemake_is_told_the_attempt() -> None:
    assert kinds.get("snakemake").attempt_flags(2) == ["--attempt", "2"]
    assert kinds.get("script").attempt_flags(2) == []
