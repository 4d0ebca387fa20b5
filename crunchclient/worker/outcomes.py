"""How a dataset ended (Outcome) and what a loop did (LoopSummary): the lines printed."""

from __future__ import annotations

from dataclasses import dataclass

from crunchclient.exceptions import ClaimLost, StageFailed
from crunchclient.worker.stages.base import first_line


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How one dataset ended."""

    dataset: str
    completed: bool
    retrying: bool = False  # failed, but the server gave it back to the queue
    retry_at: str = ""  # then: when it may be claimed again (ISO 8601, UTC)
    lost: bool = False  # the server dropped our claim: nothing was uploaded
    exit_code: int = StageFailed.exit_code  # of a failed run: the cause's when it has one
    note: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        if self.completed:
            return f"Dataset {self.dataset!r} completed in {self.seconds:.1f}s."
        return first_line(self.note)  # "Dataset 'p:d' failed at Workflow: ..."


@dataclass(frozen=True, kw_only=True)
class LoopSummary:
    """What a loop did: the numbers its last line prints.

    ``failed`` counts datasets that ended failed; a run that failed while attempts remain
    is ``retried`` (the dataset went back to the queue). Either makes the loop exit 10: a
    failure the loop produced is never hidden behind a retry still to come.
    """

    processed: int
    failed: int
    seconds: float
    reason: str
    retried: int = 0
    interrupted: bool = False
    retry_at: str = ""  # the latest time one of the retried datasets may be claimed again

    def summary(self) -> str:
        completed = self.processed - self.failed - self.retried
        at = f" at {self.retry_at[11:16]} UTC" if len(self.retry_at) >= 16 else ""
        retried = f", {self.retried} waiting to retry{at}" if self.retried else ""
        return (
            f"Processed {self.processed} dataset(s): {completed} completed, "
            f"{self.failed} failed{retried}, in {self.seconds:.1f}s ({self.reason})."
        )


def finished(outcome: Outcome) -> Outcome:
    """The outcome of a single-dataset command, or the error its exit code comes from."""
    if outcome.lost:
        raise ClaimLost(outcome.note)
    if not outcome.completed:
        raise StageFailed(outcome.note, exit_code=outcome.exit_code)
    return outcome
