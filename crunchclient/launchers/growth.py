"""``crunch submit --mem-retry x2`` and ``--time-retry x2``: tasks with more memory or time
for the datasets whose last run ran out of them.

The server keeps, per pending dataset, what its next run needs (``needs_memory``: more than
the out-of-memory run had; ``needs_seconds``: more than the timed-out run's --timeout) and
hands such a dataset only to a claim announcing at least that much. Its project overview
counts them by need ("needs"). Each need is served by a *level*: the task's memory (or
--timeout) times the factor, again and again until it is enough, up to the ceiling; each
level is a job array of its own whose loops announce that memory (--memory) or time
(--timeout). A need above the ceiling is served by none, and said so.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crunchclient.launchers.base import Launcher, Tasks
from crunchclient.launchers.nodes import slurm_memory

FACTOR = re.compile(r"^x?(\d+(?:\.\d+)?)$")
MAX_LEVELS = 16  # a factor of 1.01 still reaches any ceiling a scheduler grants


def factor(text: str) -> float:
    """--mem-retry/--time-retry: 'x2' (or '2', 'x1.5'), a factor above 1."""
    match = FACTOR.match(text.strip().lower())
    value = float(match[1]) if match else 0.0
    if not match or value <= 1 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a factor above 1: use e.g. x2 (twice as much) or x1.5."
        )
    return value


@dataclass(frozen=True)
class Growth:
    """How a task's memory (bytes) or time limit (seconds) grows for the datasets that
    needed more: ``base`` times ``factor``, again, up to ``ceiling`` (None: no ceiling)."""

    base: int
    factor: float
    ceiling: int | None = None

    def enough(self, need: int) -> int | None:
        """The first of base x factor, base x factor^2, ... that is at least ``need``
        (the ceiling if that is reached first and suffices); None when even that is less."""
        value = self.base
        for _ in range(MAX_LEVELS):
            if value >= need:
                return value
            value = math.ceil(value * self.factor)
            if self.ceiling is not None and value >= self.ceiling:
                return self.ceiling if self.ceiling >= need else None
        return value if value >= need else None


@dataclass(frozen=True, order=True)
class Level:
    """What one extra job array's tasks give each dataset."""

    memory: int | None = None  # bytes; None: the base tasks' own
    seconds: int | None = None  # the loop's --timeout; None: the base tasks' own

    def describe(self) -> str:
        parts = []
        if self.memory is not None:
            parts.append(f"--mem {slurm_memory(self.memory)}")
        if self.seconds is not None:
            parts.append(f"--timeout {self.seconds}s")
        return " and ".join(parts) or "the base tasks' memory and time"

    def name(self) -> str:
        """The job name's suffix: -mem16G, -time2h, -mem16G-time2h."""
        parts = []
        if self.memory is not None:
            parts.append(f"mem{slurm_memory(self.memory)}")
        if self.seconds is not None:
            parts.append(f"time{self.seconds}s")
        return "-".join(parts)


@dataclass(frozen=True)
class Needs:
    """The pending datasets that need more, by the level that serves them."""

    levels: dict[Level, int]
    unserved: int  # datasets no level serves (above a ceiling, or no --*-retry for them)

    @property
    def total(self) -> int:
        return sum(self.levels.values()) + self.unserved


def levels_for(
    needs: Iterable[Mapping[str, Any]], *, memory: Growth | None, time: Growth | None
) -> Needs:
    """Group the overview's "needs" ({memory, seconds, count}) by the level serving each."""
    levels: dict[Level, int] = {}
    unserved = 0
    for group in needs:
        count = int(group.get("count") or 0)
        wanted_memory, wanted_seconds = group.get("memory"), group.get("seconds")
        level_memory = level_seconds = None
        served = True
        if wanted_memory is not None:
            level_memory = memory.enough(int(wanted_memory)) if memory else None
            served = level_memory is not None
        if wanted_seconds is not None:
            level_seconds = time.enough(int(wanted_seconds)) if time else None
            served = served and level_seconds is not None
        if not served:
            unserved += count
            continue
        level = Level(memory=level_memory, seconds=level_seconds)
        levels[level] = levels.get(level, 0) + count
    return Needs(levels=levels, unserved=unserved)


class LevelJobs:
    """The job arrays of one level: its script, written when first needed, and the jobs
    submitted from it."""

    def __init__(self, script: Path, launcher: Launcher, *, write: Callable[[], None]) -> None:
        self.script = script
        self.launcher = launcher
        self.write = write
        self.job_ids: list[str] = []
        self.submitted = 0
        self.written = False

    def submit(self, tasks: int) -> str:
        if not self.written:
            self.write()
            self.written = True
        job_id = self.launcher.submit(self.script, tasks=tasks)
        self.job_ids.append(job_id)
        self.submitted += tasks
        return job_id


@dataclass
class Levels:
    """Every level's job arrays, fed from the overview's needs each round."""

    launcher: Launcher
    report: Callable[[str], None]
    make: Callable[[Level], LevelJobs]
    jobs: dict[Level, LevelJobs] = field(default_factory=dict)
    unserved: int = 0  # datasets needing more than a ceiling allows, as last said

    def feed(self, needs: Needs, keep: int, *, most: int) -> None:
        """Keep up to ``keep`` tasks of each level held while its datasets wait (at most
        ``most`` submitted at once)."""
        if needs.unserved != self.unserved:
            self.unserved = needs.unserved
            if needs.unserved:
                self.report(
                    f"{needs.unserved} dataset(s) need more memory or time than --mem-ceiling/"
                    "--time-ceiling (or a --mem-retry/--time-retry) allow: no task is "
                    "submitted for them."
                )
        for level, count in sorted(needs.levels.items()):
            jobs = self.jobs.get(level)
            if jobs is None:
                jobs = self.jobs[level] = self.make(level)
            held = self.launcher.poll(jobs.job_ids) if jobs.job_ids else Tasks()
            wanted = min(keep - held.held, count - held.queued, most)
            if wanted > 0:
                job_id = jobs.submit(wanted)
                self.report(
                    f"Submitted job {job_id}: {wanted} task(s) with {level.describe()} for "
                    f"{count} dataset(s) that need more."
                )

    def job_ids(self) -> list[str]:
        return [job_id for jobs in self.jobs.values() for job_id in jobs.job_ids]

    @property
    def submitted(self) -> int:
        return sum(jobs.submitted for jobs in self.jobs.values())
