"""``crunch submit``: write a job array script of ``crunch loop`` tasks and submit it.

The script and its private settings file (the URL, token, storage settings and proxy
settings, never on a command line): ``script.py``.

With ``keep``, the command stays and keeps that many tasks queued or running while
the project has pending datasets, then exits once nothing is pending or running. While
the project is paused it submits nothing (queued tasks keep their place) and goes on once
it is resumed.

With ``slots`` (``crunch submit --slots N``), each task is one node running one
``crunch loop --slots N`` (``nodes.py``), and a task counts for N pending datasets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from crunchclient.exceptions import ClientError, ConfigurationError, SchedulerError, SubmitError
from crunchclient.launchers.base import Launcher, Tasks
from crunchclient.launchers.growth import Level, LevelJobs, Levels, Needs, levels_for
from crunchclient.launchers.script import Prepared, Request, prepare, submitted_message, write
from crunchclient.server.connection import Connection
from crunchclient.server.wire import ProjectStats

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 5.0  # seconds before retrying a failed scheduler command
BACKOFF_MAX = 300.0


@dataclass
class Backoff:
    """Seconds to wait before the next retry of a failing scheduler command."""

    first: float = BACKOFF_FIRST
    most: float = BACKOFF_MAX
    failures: int = 0

    def next(self) -> float:
        self.failures += 1
        return float(min(self.most, self.first * 2.0 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Keeper:
    """Keep up to ``keep`` tasks queued or running while the project has pending datasets."""

    launcher: Launcher
    connection: Connection
    prepared: Prepared
    request: Request
    keep: int
    poll_seconds: float = 30.0
    report: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    job_ids: list[str] = field(default_factory=list)
    submitted: int = 0
    most_held: int = 0
    slots_seen: int = 0  # with --slots auto: the most slots a loop of our jobs reported
    standalone: bool = True  # the tasks run the console script (else manage.py)
    paused: bool = False  # the project was paused at the last poll: nothing is submitted
    levels: Levels = field(init=False)
    """--mem-retry/--time-retry: the job arrays with more memory or time, by level."""

    def __post_init__(self) -> None:
        self.levels = Levels(launcher=self.launcher, report=self.report, make=self.level_jobs)

    def level_jobs(self, level: Level) -> LevelJobs:
        request = self.request.at(level)
        prepared = prepare(request, self.launcher, standalone=self.standalone)
        return LevelJobs(
            prepared.script_path, self.launcher, write=lambda: write(prepared, request)
        )

    def needs(self) -> Needs:
        """The pending datasets that need more memory or time, by the level serving them."""
        request = self.request
        if not request.grows:
            return Needs(levels={}, unserved=0)
        overview = self.connection.overview(request.project)
        return levels_for(
            overview.get("needs") or [], memory=request.memory_growth, time=request.time_growth
        )

    def stats(self) -> ProjectStats:
        return self.connection.project_stats(self.request.project)

    def watch_pause(self) -> bool:
        """Whether the project is paused now (it hands out nothing, so a task submitted
        then would end at once); says so when that changes."""
        slug = self.request.project
        paused = self.connection.project(slug).paused
        if paused != self.paused:
            self.paused = paused
            self.report(
                f"Project {slug!r} is paused: no task is submitted until it is resumed "
                f"('crunch project resume {slug}'); queued tasks keep their place."
                if paused
                else f"Project {slug!r} was resumed: submitting again."
            )
        return paused

    def per_task(self) -> int:
        """Pending datasets one more task takes on: its slots.

        With ``--slots auto`` on whole nodes only the loops know; until one of ours has
        told the server (the overview's "slots"), a task counts for one dataset.
        """
        known = self.request.slots.per_task(self.request.scheduler.get("cpus_per_task"))
        if known is not None:
            return known
        if self.job_ids:
            overview = self.connection.overview(self.request.project)
            for client in overview.get("slots") or []:
                if str(client.get("slurm_job_id") or "") in self.job_ids:
                    self.slots_seen = max(self.slots_seen, int(client.get("slots") or 0))
        return max(1, self.slots_seen)

    def run(self) -> str:
        """Submit until nothing is pending or running; return the closing summary."""
        backoff = Backoff()
        done_before, ended_since_progress = -1, 0
        while True:
            stats = self.stats()
            paused = self.watch_pause()
            needs = self.needs()
            try:
                tasks = self.launcher.poll(self.job_ids)
                if not paused:
                    self.levels.feed(needs, self.keep, most=self.request.jobs)
            except SchedulerError as exc:
                self.retry_later(exc, backoff)
                continue
            self.most_held = max(self.most_held, tasks.held)
            # Datasets that need more go to the levels' tasks only.
            pending, running = max(0, stats.pending - needs.total), stats.running
            done = stats.completed + stats.failed
            ended = self.submitted - tasks.held
            if done != done_before or paused:  # a task ending on a paused project: no fault
                done_before, ended_since_progress = done, ended
            elif ended - ended_since_progress >= max(3, 2 * self.keep) and pending:
                raise SubmitError(
                    f"{ended - ended_since_progress} task(s) ended without finishing a dataset "
                    f"of {self.request.project!r}: a dataset may need more than --time, or the "
                    "tasks fail to start; see their output (--output)."
                )
            if not stats.pending and not running and (summary := self.ended(tasks, stats)):
                return summary
            wanted = math.ceil(pending / self.per_task()) if pending else 0
            count = min(self.keep - tasks.held, wanted - tasks.queued, self.request.jobs)
            if pending and count > 0 and not paused:
                try:
                    job_id = self.launcher.submit(self.prepared.script_path, tasks=count)
                except SchedulerError as exc:
                    if not self.job_ids:
                        raise  # the first submission failing is the job's settings, not luck
                    self.retry_later(exc, backoff)
                    continue
                self.job_ids.append(job_id)
                self.submitted += count
                self.most_held = max(self.most_held, tasks.held + count)
                self.report(
                    f"Submitted job {job_id}: {count} task(s); {tasks.held} already held, "
                    f"{pending} dataset(s) pending."
                )
            backoff.reset()
            self.sleep(self.poll_seconds)

    def ended(self, tasks: Tasks, stats: ProjectStats) -> str | None:
        """With nothing pending or running: cancel what is still queued; once none of our
        tasks runs, the closing summary."""
        every = self.launcher.poll(self.all_job_ids()) if self.levels.jobs else tasks
        if every.queued:
            for job_id in self.all_job_ids():
                self.launcher.cancel(job_id, queued_only=True)
        if every.running:
            return None
        return (
            f"Project {self.request.project!r}: nothing pending or running "
            f"({stats.completed} completed, {stats.failed} failed); "
            f"submitted {self.submitted + self.levels.submitted} task(s) in "
            f"{len(self.all_job_ids())} job(s), at most {self.most_held} at once."
        )

    def all_job_ids(self) -> list[str]:
        return [*self.job_ids, *self.levels.job_ids()]

    def retry_later(self, exc: SchedulerError, backoff: Backoff) -> None:
        pause = backoff.next()
        logger.warning("%s; retrying in %gs", exc, pause)
        self.sleep(pause)


def submit(
    request: Request, launcher: Launcher, *, standalone: bool, dry_run: bool = False,
    keep: int | None = None, poll_seconds: float = 30.0,
    report: Callable[[str], None] = print,
) -> str | None:  # fmt: skip
    """Submit the job array (or keep tasks going); return the job id (None with dry_run)."""
    if keep is not None:
        request = replace(request, jobs=min(request.jobs, keep))
    prepared = prepare(request, launcher, standalone=standalone)
    if dry_run:
        report(prepared.script.rstrip("\n"))
        if request.grows:
            report(dry_run_levels(request, launcher, standalone=standalone))
        return None
    connection = Connection(request.url, request.token)
    project = connection.project(request.project)  # a wrong slug or token fails before sbatch
    if project.paused and keep is None:
        logger.warning(
            "Project %r is paused: its tasks find nothing to do and end at once if they start "
            "before it is resumed ('crunch project resume %s').", request.project, request.project,
        )  # fmt: skip
    write(prepared, request)
    keeper = Keeper(
        launcher=launcher, connection=connection, prepared=prepared, request=request,
        keep=keep or 0, poll_seconds=poll_seconds, report=report, standalone=standalone,
    )  # fmt: skip
    try:
        if keep is None:
            job_id = launcher.submit(prepared.script_path, tasks=request.jobs)
            keeper.job_ids.append(job_id)
            report(submitted_message(launcher, job_id, request.jobs, request))
            keeper.levels.feed(
                keeper.needs(), request.jobs, most=request.jobs
            )  # once: those waiting now
        else:
            report(keeper.run())
    finally:
        if not keeper.job_ids:  # nothing submitted: no job will read them
            prepared.env_path.unlink(missing_ok=True)
            prepared.script_path.unlink(missing_ok=True)
    return keeper.job_ids[0] if keeper.job_ids else None


def dry_run_levels(request: Request, launcher: Launcher, *, standalone: bool) -> str:
    """What --mem-retry/--time-retry would submit now: an array per level that the pending
    datasets need (asked of the server), else the first level as an example."""
    try:
        connection = Connection(request.url, request.token, retry_for=5.0)
        needs = Keeper(
            launcher=launcher, connection=connection, request=request, keep=0,
            prepared=prepare(request, launcher, standalone=standalone),
        ).needs()  # fmt: skip
        asked = ""
    except ClientError as exc:
        needs, asked = Needs(levels={}, unserved=0), f" (the server could not say: {exc})"
    lines = []
    levels = needs.levels
    if not levels:
        first = Level(
            memory=request.memory_growth.enough(request.memory_growth.base + 1)
            if request.memory_growth else None,
            seconds=request.time_growth.enough(request.time_growth.base + 1)
            if request.time_growth else None,
        )  # fmt: skip
        lines.append(
            f"# No pending dataset needs more memory or time now{asked}; for those that "
            f"will, 'crunch submit' submits arrays like this one ({first.describe()}):"
        )
        levels = {first: request.jobs}
    for level, count in sorted(levels.items()):
        if needs.levels:
            lines.append(f"# {count} dataset(s) need more: {level.describe()}:")
        lines.append(prepare(request.at(level), launcher, standalone=standalone).script)
    if needs.unserved:
        lines.append(f"# {needs.unserved} dataset(s) need more than the ceilings allow.")
    return "\n".join(line.rstrip("\n") for line in lines)


def check_request(request: Request) -> None:
    if request.margin >= request.wall:
        raise ConfigurationError(
            f"--margin {request.margin:g}s leaves no time of --time {request.wall:g}s: "
            "pass a smaller --margin or a longer --time."
        )
    if math.isinf(request.wall):
        raise ConfigurationError("--time must be finite.")
