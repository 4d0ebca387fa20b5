"""MemoryCage: the client enforces ``--memory`` on a workflow that no container runtime
limits, with a cgroup of its own below the client's, where it may make one: as root on
cgroup v1, or in a delegated cgroup v2 whose memory controller is enabled for its children.

Batch systems that do not enforce a task's memory (Slurm without task/cgroup) then still
kill a workflow that uses more than its task was given, and the kill reads as out-of-memory
(the cage's own ``oom_kill`` counter). Where no cgroup can be made, the workflow runs
unlimited, said once in the log.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from crunchclient.worker.failures import read_oom_kills

logger = logging.getLogger(__name__)

WARNED: set[str] = set()
JOIN = 'echo $$ > "$0" && exec "$@"'
"""The shell line that moves the workflow into the cage before it starts: ``sh -c JOIN
TASKS_FILE ARGV...``."""


def own_memory_cgroup() -> tuple[str, Path] | None:
    """("v1" or "v2", the folder of the client's memory cgroup), or None when unknown."""
    from crunchclient.worker.failures import cgroup_files

    try:
        proc = Path("/proc/self/cgroup").read_text(encoding="utf-8")
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for path in cgroup_files(proc, mountinfo):
        if path.name == "memory.oom_control" and path.parent.is_dir():
            return "v1", path.parent
        if path.name == "memory.events" and path.is_file():
            return "v2", path.parent
    return None


class MemoryCage:
    """A cgroup with a memory limit that one workflow runs in; removed after it ends."""

    def __init__(self, version: str, folder: Path) -> None:
        self.version = version
        self.folder = folder

    @classmethod
    def make(cls, limit: int, name: str) -> MemoryCage | None:
        """A new cgroup below the client's limited to ``limit`` bytes; None where the
        client may not make one (said once)."""
        found = own_memory_cgroup()
        if found is None:
            cls.cannot("the client's memory cgroup is not found in /proc/self/cgroup")
            return None
        version, parent = found
        if version == "v2":
            try:
                controllers = (parent / "cgroup.subtree_control").read_text().split()
            except OSError as exc:
                cls.cannot(f"{parent} cannot be read ({exc.strerror})")
                return None
            if "memory" not in controllers:
                cls.cannot(f"{parent} does not delegate the memory controller")
                return None
        folder = parent / f"crunch-{os.getpid()}-{name}"
        files = (
            ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            if version == "v1"
            else ["memory.max", "memory.swap.max"]
        )
        try:
            folder.mkdir()
        except OSError as exc:
            cls.cannot(f"a cgroup cannot be made in {parent} ({exc.strerror})")
            return None
        cage = cls(version, folder)
        try:
            (folder / files[0]).write_text(str(limit))
        except OSError as exc:
            cage.remove()
            cls.cannot(f"{folder / files[0]} cannot be written ({exc.strerror})")
            return None
        try:  # no swap beyond the limit, where the kernel accounts it
            (folder / files[1]).write_text(str(limit) if version == "v1" else "0")
        except OSError:
            pass
        return cage

    @staticmethod
    def cannot(why: str) -> None:
        """Say once why the workflow runs without the limit (the caller returns None)."""
        if why not in WARNED:
            WARNED.add(why)
            logger.warning("--memory is not enforced on the workflow: %s", why)

    @property
    def tasks_file(self) -> Path:
        return self.folder / ("tasks" if self.version == "v1" else "cgroup.procs")

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the cage."""
        return ["sh", "-c", JOIN, str(self.tasks_file), *argv]

    def oom_kills(self) -> int | None:
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        return read_oom_kills(self.folder / name)

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (the workflow's group has ended)."""
        for _ in range(50):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        logger.warning("The workflow's cgroup %s could not be removed", self.folder)
