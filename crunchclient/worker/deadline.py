"""Deadline: whether another dataset still fits in the time the loop's job has left.

A batch job that starts a dataset it cannot finish loses that work at its wall time and
makes another job start over. So before each claim the loop asks ``Deadline.stop_reason``:
the job's end comes from Slurm (``SLURM_JOB_END_TIME``, else ``squeue``) or from
``--time-limit``, whichever is sooner; a dataset's expected run time is the project's
measured 90th percentile (the server's stats), else the slowest this loop has seen.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping

from crunchclient.exceptions import ClientError
from crunchclient.server.connection import Connection
from crunchclient.server.wire import ProjectStats

logger = logging.getLogger(__name__)

STATS_REFRESH = 60.0  # seconds between looks at the project's measured run times
LIMIT_WINDOW = 120.0
"""A signal this close to the loop's --time-limit is the job's end: ``crunch submit`` has
Slurm signal its tasks when their loop's --time-limit ends, up to a minute early."""
JOB_WINDOW = 420.0
"""A signal this close to the Slurm job's end is its wall time: --margin is at most 5 min."""


def slurm_job_end(environ: Mapping[str, str] | None = None) -> float | None:
    """The Slurm job's end as a Unix time, or None outside Slurm or when Slurm cannot say."""
    env = os.environ if environ is None else environ
    if text := env.get("SLURM_JOB_END_TIME", "").strip():
        try:
            return float(text)
        except ValueError:
            logger.warning("SLURM_JOB_END_TIME is %r, not a Unix time: ignored", text)
    job = env.get("SLURM_JOB_ID", "").strip()
    if not job:
        return None
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format=%e"],
            check=False, capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("Cannot ask squeue when job %s ends (%s): using --time-limit only", job, exc)
        return None
    text = answer.stdout.strip().splitlines()[0] if answer.stdout.strip() else ""
    try:
        return datetime.datetime.fromisoformat(text).timestamp()  # local time, as squeue prints
    except ValueError:
        logger.warning("squeue gives no end for job %s (%r): using --time-limit only", job, text)
        return None


class Deadline:
    """The loop's end, and the run time a dataset is expected to need."""

    def __init__(
        self, *, ends_at: float | None, source: str = "",
        stats: Callable[[], ProjectStats] | None = None,
        clock: Callable[[], float] = time.monotonic, limit_at: float | None = None,
        job_at: float | None = None,
    ) -> None:  # fmt: skip
        self.ends_at = ends_at  # on ``clock``
        self.limit_at = limit_at  # --time-limit's end, on ``clock``
        self.job_at = job_at  # the Slurm job's end, on ``clock``
        self.source = source
        self.stats = stats
        self.clock = clock
        self.measured: float | None = None
        self.measured_at: float | None = None

    @classmethod
    def for_loop(
        cls, connection: Connection, *, project: str | None, time_limit: float | None,
        environ: Mapping[str, str] | None = None,
    ) -> Deadline:  # fmt: skip
        """The sooner of the Slurm job's end and ``--time-limit`` from now."""
        now = time.monotonic()
        ends: list[tuple[float, str]] = []
        limit_at = job_at = None
        if time_limit is not None:
            limit_at = now + time_limit
            ends.append((limit_at, f"--time-limit {time_limit:g}s"))
        if (job_end := slurm_job_end(environ)) is not None:
            env = os.environ if environ is None else environ
            job_at = now + job_end - time.time()
            ends.append((job_at, f"Slurm job {env.get('SLURM_JOB_ID')}'s end"))
        ends_at, source = min(ends) if ends else (None, "")
        if not project:
            return cls(ends_at=ends_at, source=source, limit_at=limit_at, job_at=job_at)
        slug = project
        return cls(
            ends_at=ends_at, source=source, stats=lambda: connection.project_stats(slug),
            limit_at=limit_at, job_at=job_at,
        )  # fmt: skip

    def near_end(self) -> bool:
        """Whether a SIGTERM now is the job's end rather than someone cancelling it: the
        loop's --time-limit or the Slurm job's end is close (LIMIT_WINDOW, JOB_WINDOW)."""
        now = self.clock()
        return (self.limit_at is not None and self.limit_at - now <= LIMIT_WINDOW) or (
            self.job_at is not None and self.job_at - now <= JOB_WINDOW
        )

    def left(self) -> float | None:
        return None if self.ends_at is None else self.ends_at - self.clock()

    def project_p90(self) -> float | None:
        """The project's measured run time, asked again at most once a minute."""
        now = self.clock()
        if self.stats is None or (
            self.measured_at is not None and now - self.measured_at < STATS_REFRESH
        ):
            return self.measured
        self.measured_at = now
        try:
            value = self.stats().run_seconds_p90
        except ClientError as exc:  # keep what we knew: the claim will meet the same outage
            logger.info("Cannot read the project's run times: %s", exc)
            return self.measured
        self.measured = float(value) if value is not None else None
        return self.measured

    def stop_reason(self, slowest: float) -> str | None:
        """Why the loop must not claim another dataset now; None when one fits."""
        left = self.left()
        if left is None:
            return None
        p90 = self.project_p90()
        expected, basis = (
            (p90, "the project's 90th percentile") if p90 is not None
            else (slowest, "the slowest of this loop")
        )  # fmt: skip
        if left <= 0:
            return f"{self.source} reached"
        if expected > left:
            return (
                f"{left:.0f}s left before {self.source}, less than a dataset needs "
                f"({expected:.0f}s, {basis})"
            )
        return None
