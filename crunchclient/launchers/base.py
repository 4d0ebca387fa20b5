"""The launcher interface: write a job script, submit it, poll it, cancel it.

``crunch submit`` speaks only to this interface, so PBS or LSF would be one more class
beside ``slurm.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What one job array asks of the scheduler, and what each of its tasks runs."""

    name: str
    tasks: int
    wall_seconds: float
    signal_seconds: float  # the scheduler signals the task this long before its end
    command: list[str]  # run in each task, after the setup lines
    env_file: Path  # sourced first: the settings that must not be on a command line
    env_names: list[str] = field(default_factory=list)  # the variables it sets, for comments
    setup: list[str] = field(default_factory=list)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int | None = None  # per task: 1 for a whole node (crunch submit --slots)
    ntasks: int | None = None
    exclusive: bool = False  # the task has its node to itself
    cpus_per_task: int | None = None
    mem: str | None = None
    gres: str | None = None
    constraint: str | None = None
    output: str | None = None
    extra: list[str] = field(default_factory=list)  # raw scheduler arguments
    runs: str = "'crunch loop'"  # what each task runs, for the script's first comment


@dataclass(frozen=True)
class Tasks:
    """Tasks of our job arrays still held by the scheduler."""

    queued: int = 0
    running: int = 0

    @property
    def held(self) -> int:
        return self.queued + self.running


class Launcher(abc.ABC):
    """One batch scheduler."""

    name: str = ""

    @abc.abstractmethod
    def script(self, spec: JobSpec) -> str:
        """The job script for ``spec``, as the scheduler reads it."""

    @abc.abstractmethod
    def submit(self, script: Path, *, tasks: int) -> str:
        """Submit ``script`` as an array of ``tasks`` tasks; return the job id."""

    @abc.abstractmethod
    def poll(self, job_ids: list[str]) -> Tasks:
        """How many tasks of these jobs are queued or running now."""

    @abc.abstractmethod
    def cancel(self, job_id: str, *, queued_only: bool = False) -> None:
        """Cancel a job (only its tasks that have not started, with ``queued_only``)."""

    def watch_hint(self, job_id: str) -> str:
        """The command that shows the job in the scheduler's queue."""
        return ""
