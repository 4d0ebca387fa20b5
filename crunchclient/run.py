"""run_dataset(), run_next(), run_loop(): claim datasets and run their stages in order."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from crunchclient import diagnostics
from crunchclient.config import ClientConfig
from crunchclient.connection import Connection
from crunchclient.deadline import Deadline
from crunchclient.exceptions import (
    ClaimLost,
    ClientError,
    ConfigurationError,
    Interrupted,
    ServerError,
    StageFailed,
)
from crunchclient.shutdown import Shutdown
from crunchclient.stages.base import RunContext, first_line
from crunchclient.stages.setup import SetupStage, kind_of, workflow_bytes
from crunchclient.stages.upload import UploadStage
from crunchclient.stages.workflow import WorkflowStage
from crunchclient.wire import Claim, ProjectInfo

logger = logging.getLogger(__name__)

STAGES = (SetupStage, WorkflowStage, UploadStage)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How one dataset ended."""

    dataset: str
    completed: bool
    retrying: bool = False  # failed, but the server gave it back to the queue
    lost: bool = False  # the server dropped our claim: nothing was uploaded
    exit_code: int = StageFailed.exit_code  # of a failed run: the cause's when it has one
    note: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        if self.completed:
            return f"Dataset {self.dataset!r} completed in {self.seconds:.1f}s."
        return f"Dataset {self.dataset!r} not completed: {first_line(self.note)}"


@dataclass(frozen=True, kw_only=True)
class LoopSummary:
    """What a loop did: the numbers its last line prints.

    ``failed`` counts datasets that ended failed; a run that failed while attempts remain
    is ``retried`` (the dataset went back to the queue) and does not fail the loop.
    """

    processed: int
    failed: int
    seconds: float
    reason: str
    retried: int = 0
    interrupted: bool = False

    def summary(self) -> str:
        completed = self.processed - self.failed - self.retried
        retried = f", {self.retried} to be retried" if self.retried else ""
        return (
            f"Processed {self.processed} dataset(s): {completed} completed, "
            f"{self.failed} failed{retried}, in {self.seconds:.1f}s ({self.reason})."
        )


# ---------------------------------------------------------------------------- heartbeat


class Heartbeat(threading.Thread):
    """Renew the claim's lease in the background; flag the context when the claim is gone."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(name=f"heartbeat {context.slug}", daemon=True)
        self.context = context
        self.done = threading.Event()
        self.connection = context.connection.clone()

    def run(self) -> None:
        context = self.context
        interval = max(0.05, context.config.heartbeat_seconds)
        try:
            while not self.done.wait(interval):
                try:
                    self.connection.renew(
                        str(context.claim.id), lease_seconds=context.config.lease_seconds
                    )
                except ClaimLost:
                    if not self.done.is_set():
                        logger.warning(
                            "%s: the server dropped our claim; stopping the dataset", context.slug
                        )
                        context.lost.set()
                    return
                except ClientError as exc:  # keep working: the lease may survive the outage
                    logger.warning("%s: could not renew the lease: %s", context.slug, exc)
        finally:
            self.connection.close()

    @contextmanager
    def running(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.done.set()
            self.join(timeout=5)


# ---------------------------------------------------------------------------- one dataset


def process(
    config: ClientConfig, connection: Connection, claimed: Claim, shutdown: Shutdown
) -> Outcome:
    """Run the stages on a claimed dataset. A stage's Fail ends the dataset, not the client.

    Raises Interrupted after releasing the claim when a signal asked us to stop.
    """
    started = time.monotonic()
    workdir = config.directory / claimed.project.slug / claimed.dataset.slug.split(":", 1)[-1]
    context = RunContext(
        config=config, connection=connection, claim=claimed, workdir=workdir, shutdown=shutdown,
        diagnostics=diagnostics.collect(config.directory),
    )  # fmt: skip
    logger.info("Claimed dataset %s (claim %s)", context.slug, context.claim.id)
    try:
        with Heartbeat(context).running():
            for stage in STAGES:
                stage(context)()
    except StageFailed as exc:
        logger.warning("%s", exc)
        return Outcome(
            dataset=context.slug, completed=False, retrying=exc.retrying, note=str(exc),
            seconds=time.monotonic() - started, exit_code=exc.exit_code,
        )  # fmt: skip
    except ClaimLost as exc:
        logger.warning("%s", exc)
        return Outcome(
            dataset=context.slug, completed=False, lost=True, note=str(exc),
            seconds=time.monotonic() - started,
        )  # fmt: skip
    except Interrupted as exc:
        release(connection, context, note=f"{exc} The dataset was released to be processed again.")
        raise
    finally:
        context.setup_checksums.stop()  # a failed dataset's files need no checksums
    if config.cleanup:
        shutil.rmtree(workdir, ignore_errors=True)
    return Outcome(dataset=context.slug, completed=True, seconds=time.monotonic() - started)


def release(connection: Connection, context: RunContext, *, note: str) -> None:
    """Give the dataset back to the queue; the server records the note as a Fail status."""
    try:
        connection.release(str(context.claim.id), note=note)
        logger.warning("%s: released its claim (%s)", context.slug, note)
    except ClaimLost:
        logger.warning("%s: the claim was already gone", context.slug)


def check_project_workflow(config: ClientConfig, project: ProjectInfo) -> None:
    """Refuse before claiming when the project has no workflow and no --path was given,
    or when this node lacks its kind's tool (Snakemake, the interpreter of its '#!')."""
    workflow = workflow_bytes(config.path, project)
    kind = kind_of(config.workflow, project)
    what = f"Project {project.slug!r} (workflow kind {kind.kind.value!r})"
    if config.workflow:
        what = f"--workflow {config.workflow}"
    kind.check(what, workflow)


def connect(config: ClientConfig) -> Connection:
    return Connection(
        config.url, config.token, retry_for=config.retry_for,
        start_retry_for=config.start_retry_for,
    )  # fmt: skip


def claim_next(
    config: ClientConfig, connection: Connection, *, project: str | None
) -> Claim | None:
    claimed = connection.claim_next(
        holder=config.holder, lease_seconds=config.lease_seconds, project=project
    )
    if claimed is not None:
        try:
            check_project_workflow(config, claimed.project)
        except ConfigurationError:
            # Found only after claiming (no --project to check first): give it back untouched.
            connection.release(str(claimed.id), note="")
            raise
    return claimed


# ---------------------------------------------------------------------------- the commands


def finished(outcome: Outcome) -> Outcome:
    """The outcome of a single-dataset command, or the error its exit code comes from."""
    if outcome.lost:
        raise ClaimLost(outcome.note)
    if not outcome.completed:
        raise StageFailed(outcome.note, exit_code=outcome.exit_code)
    return outcome


def run_dataset(config: ClientConfig, slug: str) -> Outcome:
    """Claim the dataset ``slug`` and process it; StageFailed if it does not complete."""
    connection = connect(config)
    dataset = connection.dataset(slug)
    check_project_workflow(config, connection.project(dataset.project))
    shutdown = Shutdown()
    with shutdown.installed():
        claimed = connection.claim_dataset(
            slug, holder=config.holder, lease_seconds=config.lease_seconds
        )
        outcome = process(config, connection, claimed, shutdown)
    return finished(outcome)


def run_next(config: ClientConfig, *, project: str | None = None) -> Outcome | None:
    """Claim the next pending dataset and process it; None when nothing is pending."""
    connection = connect(config)
    if project:
        check_project_workflow(config, connection.project(project))
    shutdown = Shutdown()
    with shutdown.installed():
        claimed = claim_next(config, connection, project=project)
        if claimed is None:
            return None
        outcome = process(config, connection, claimed, shutdown)
    return finished(outcome)


def run_loop(
    config: ClientConfig,
    *,
    project: str | None = None,
    max_datasets: int | None = None,
    time_limit: float | None = None,
    wait: float | None = None,
) -> LoopSummary:
    """Process datasets until none is pending, a limit is reached or a signal arrives.

    With ``wait``, "none pending" while other clients still hold datasets means checking
    again after ``wait`` seconds: a dataset whose client dies comes back when its lease
    expires, and a waiting loop picks it up.
    """
    connection = connect(config)
    if project:
        check_project_workflow(config, connection.project(project))
    started = time.monotonic()
    processed = failed = retried = 0
    ended: dict[str, Outcome] = {}
    slowest = 0.0
    deadline = Deadline.for_loop(connection, project=project, time_limit=time_limit)
    reason = "nothing pending"
    shutdown = Shutdown()
    with shutdown.installed():
        while True:
            if shutdown.requested:
                reason = f"stopped by {shutdown.signal_name}"
                break
            if max_datasets is not None and processed >= max_datasets:
                reason = f"reached --max-datasets {max_datasets}"
                break
            elapsed = time.monotonic() - started
            if time_limit is not None and elapsed + slowest > time_limit:
                reason = f"--time-limit {time_limit:g}s nearly reached"
                break
            if late := deadline.stop_reason(slowest):
                reason = late
                break
            try:
                claimed = claim_next(config, connection, project=project)
            except ServerError as exc:
                if processed == 0:
                    raise
                logger.warning("Stopping the loop: %s", exc)
                reason = "server unreachable"
                break
            if claimed is None:
                if wait is None or not (running := connection.running_count(project)):
                    break
                logger.info(
                    "Nothing pending; %d dataset(s) held by other clients; checking again in %gs",
                    running, wait,
                )  # fmt: skip
                shutdown.event.wait(wait)
                continue
            try:
                outcome = process(config, connection, claimed, shutdown)
            except Interrupted:
                reason = f"stopped by {shutdown.signal_name}"
                break
            # Datasets, not claims: one retried and claimed again counts once, as it ended.
            ended[outcome.dataset] = outcome
            processed = len(ended)
            retried = sum(o.retrying for o in ended.values())
            failed = sum(not o.completed and not o.retrying for o in ended.values())
            slowest = max(slowest, outcome.seconds)
            logger.info("%s", outcome.summary())
    return LoopSummary(
        processed=processed, failed=failed, retried=retried, seconds=time.monotonic() - started,
        reason=reason,
        interrupted=shutdown.requested,
    )  # fmt: skip


def retry(connection: Connection, *, dataset: str | None = None, project: str | None = None) -> str:
    """Put failed datasets back to pending: one by slug, or all of a project's."""
    if dataset:
        answer = connection.retry_dataset(dataset)
        return f"Dataset {answer['slug']!r} is {answer['state']} again."
    assert project
    count = connection.retry_project(project)
    return f"{count} failed dataset(s) of project {project!r} are pending again."
