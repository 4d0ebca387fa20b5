"""A dataset's timeline: its statuses paired into stage runs, Start to Success or Fail,
with the host, the Slurm job and the reason of each (the dataset page)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from crunch.choices import FailReason, Stage, State
from crunch.models import Status


@dataclass(frozen=True, kw_only=True)
class StageRun:
    """One stage of one attempt: from its Start to its Success or Fail."""

    stage: str
    state: str
    started: datetime.datetime | None
    ended: datetime.datetime | None
    hostname: str
    note: str
    job: str = ""
    """The Slurm job, with its array task (``123_4``)."""
    slot: int | None = None
    """The slot of its loop (crunch loop --slots) that ran it."""
    reason: str = ""
    """A Fail's reason, with its detail: "exit-code (3)"."""

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


def stage_runs(statuses: list[Status]) -> list[StageRun]:
    """Pair each Start with the Success or Fail of the same stage that follows it."""
    runs: list[StageRun] = []
    open_start: Status | None = None
    for status in statuses:
        if status.state == State.START:
            if open_start is not None:
                runs.append(_run(open_start, None, "Interrupted"))
            open_start = status
            continue
        start = open_start if open_start is not None and open_start.stage == status.stage else None
        if open_start is not None and start is None:
            runs.append(_run(open_start, None, "Interrupted"))
        runs.append(_run(start, status, State(status.state).label))
        open_start = None
    if open_start is not None:
        runs.append(_run(open_start, None, "Running"))
    return runs


def _run(start: Status | None, end: Status | None, outcome: str) -> StageRun:
    first = start or end
    assert first is not None
    return StageRun(
        stage=Stage(first.stage).label,
        state=outcome,
        started=start.created if start else None,
        ended=end.created if end else None,
        hostname=(end and end.hostname) or (start and start.hostname) or "",
        note=end.note if end else "",
        reason=_reason_of(end),
        job=_job_of(end) or _job_of(start),
        slot=next((s.slot for s in (end, start) if s is not None and s.slot is not None), None),
    )


def _reason_of(status: Status | None) -> str:
    if status is None or status.state != State.FAIL:
        return ""
    reason = status.reason or FailReason.UNKNOWN
    return f"{reason} ({status.reason_detail})" if status.reason_detail else reason


def _job_of(status: Status | None) -> str:
    if status is None or not status.slurm_job_id:
        return ""
    task = status.slurm_array_task_id
    return f"{status.slurm_job_id}_{task}" if task else status.slurm_job_id
