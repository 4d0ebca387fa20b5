"""Worker: claims datasets and runs its stages on them, one connection and one set of
signal handlers for ``run_dataset``, ``run_next`` and ``run_loop``.

Another project subclasses it to run other stages::

    class MyWorker(Worker):
        stages = (SetupStage, MyStage, UploadStage)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from crunch.choices import WorkflowKind
from crunchclient.exceptions import (
    ClaimLost,
    ClientError,
    ConfigurationError,
    Interrupted,
    ProjectPaused,
    ResultsRefused,
    ServerError,
    StageFailed,
)
from crunchclient.server.bodies import Diagnostics, NextRequest
from crunchclient.server.connection import Connection
from crunchclient.server.wire import Claim, ProjectInfo
from crunchclient.settings import kinds
from crunchclient.settings.config import ClientConfig
from crunchclient.transfer.paths import remove_work_folder, work_folder
from crunchclient.worker import diagnostics, failures, results
from crunchclient.worker.context import RunContext
from crunchclient.worker.deadline import Deadline
from crunchclient.worker.heartbeat import Heartbeat, Watcher
from crunchclient.worker.outcomes import LoopSummary, Outcome, finished
from crunchclient.worker.shutdown import Shutdown
from crunchclient.worker.stages.base import Stage
from crunchclient.worker.stages.setup import SetupStage, kind_of, workflow_bytes
from crunchclient.worker.stages.upload import UploadStage
from crunchclient.worker.stages.workflow import WorkflowStage
from crunchclient.worker.workflow.runners import Runner

logger = logging.getLogger(__name__)


class Worker:
    """Processes datasets of the server in ``config``; ``stages`` run in order on each."""

    stages: ClassVar[tuple[type[Stage], ...]] = (SetupStage, WorkflowStage, UploadStage)

    def __init__(self, config: ClientConfig, *, connection: Connection | None = None) -> None:
        self.config = config
        self.connection = connection or Connection(
            config.url, config.token, retry_for=config.retry_for,
            start_retry_for=config.start_retry_for,
        )  # fmt: skip
        self.shutdown = Shutdown()
        self.prefetched: Claim | None = None
        """The next dataset's claim, taken with the last one's Upload Success."""
        self._diagnostics: Diagnostics | None = None
        self._heartbeat: Watcher | None = None
        self.runners: dict[str, Runner] = {}
        self.memory = failures.task_memory(config)
        """Bytes one dataset's workflow has: announced with each claim, sent with a Fail."""
        self.seconds = failures.task_seconds(config)
        self.deadline: Deadline | None = None
        """The loop's end (run_loop): whether a signal is the job's wall time."""
        self.ends_at: float | None = None
        """When the loop's --time-limit ends (time.monotonic()): a running workflow stops."""

    def runner(self, project: ProjectInfo) -> Runner:
        """How the project's workflows start here (its image's runtime, the sandbox): one
        runner per image, checked once."""
        container = project.container
        if container not in self.runners:
            self.runners[container] = Runner(self.config, container)
        return self.runners[container]

    @property
    def diagnostics(self) -> Diagnostics:
        """The machine's facts, gathered once per worker: they do not change per dataset."""
        if self._diagnostics is None:
            self._diagnostics = diagnostics.collect(self.config.directory)
        return self._diagnostics

    @contextmanager
    def beating(self) -> Iterator[Watcher]:
        """The run's heartbeat thread: started on the way in, stopped on the way out;
        nested uses (each dataset of a loop) share it."""
        if self._heartbeat is not None:
            yield self._heartbeat
            return
        heartbeat = self._heartbeat = Heartbeat(self.connection, self.config)
        heartbeat.start()
        try:
            yield heartbeat
        finally:
            heartbeat.stop()
            self._heartbeat = None

    @contextmanager
    def signals(self) -> Iterator[Shutdown]:
        """SIGTERM and SIGINT ask the run to stop (the claim is released) while inside."""
        self.shutdown = Shutdown()
        with self.shutdown.installed():
            yield self.shutdown

    # ------------------------------------------------------------------------ checks, claims

    def check_project(self, project: ProjectInfo) -> None:
        """Refuse before claiming when the project has no workflow and no --path was given,
        or when this node lacks its kind's tool (Snakemake, the interpreter of its '#!')."""
        config = self.config
        workflow = workflow_bytes(config.path, project)
        kind = kind_of(config.workflow, project)
        what = f"Project {project.slug!r} (workflow kind {kind.kind.value!r})"
        if config.workflow:
            what = f"--workflow {config.workflow}"
        runner = self.runner(project)
        if not runner.container:  # in a container, the image brings the tool
            kind.check(what, workflow)
            if kind.kind == WorkflowKind.SNAKEMAKE and kinds.names_rule_containers(workflow):
                require_apptainer(what)
        runner.check()

    def claim_next(self, project: str | None) -> Claim | None:
        """The claim taken with the last Upload Success, else a new one.

        With ``project`` (checked before claiming) the server records the Setup Start with
        the claim; a dataset of any project is checked first, and may be given back unstarted.
        """
        claimed, self.prefetched = self.prefetched, None
        if claimed is None:
            claimed = self.fetch_claim(project)
        if claimed is not None:
            try:
                self.check_project(claimed.project)
            except ConfigurationError:
                # Found only after claiming (no --project to check first): give it back untouched.
                self.connection.release(str(claimed.id), note="")
                raise
        return claimed

    def fetch_claim(self, project: str | None) -> Claim | None:
        """Ask the server for the next pending dataset (of ``project``)."""
        config = self.config
        return self.connection.claim_next(
            holder=config.holder, lease_seconds=config.lease_seconds, project=project,
            start=self.diagnostics if project else None, memory=self.memory,
            seconds=self.seconds,
        )  # fmt: skip

    def next_request(self, project: str | None) -> NextRequest:
        """What an Upload Success carries to claim the next dataset in the same call."""
        config = self.config
        start = self.diagnostics if project else None  # see claim_next
        return NextRequest(
            holder=config.holder, lease_seconds=config.lease_seconds, start=start,
            project=project, memory=self.memory, seconds=self.seconds,
        )  # fmt: skip

    def give_back_prefetched(self, reason: str) -> None:
        """Release a claim taken ahead when the loop stops before processing it."""
        claimed, self.prefetched = self.prefetched, None
        if claimed is None:
            return
        try:
            self.connection.release(
                str(claimed.id), note=f"Released unstarted: the client stopped ({reason})."
            )
        except ClientError as exc:
            logger.warning(
                "%s: could not release the claim taken ahead: %s", claimed.dataset.slug, exc
            )

    def release(
        self, context: RunContext, *, note: str, failure: failures.Failure = failures.CANCELLED
    ) -> None:
        """Give the dataset back to the queue; the server records the note as a Fail status
        with ``failure``'s reason (a release never spends an attempt)."""
        try:
            context.send()  # a Success still held is true: record it before the Fail
        except ClientError as exc:
            logger.warning("%s: %s", context.slug, exc)
        try:
            self.connection.release(
                str(context.claim.id), note=note, reason=failure.reason, detail=failure.detail
            )
            logger.warning("%s: released its claim (%s; %s)", context.slug, note, failure)
        except ClaimLost:
            logger.warning("%s: the claim was already gone", context.slug)

    def release_failure(self, exc: Interrupted) -> failures.Failure:
        """Why a stopped run gives its dataset back: the loop's --time-limit, a signal at
        the batch job's end (wall-time: the task ran out of time, not the dataset), else the
        user cancelled it."""
        if isinstance(exc, failures.Failed):
            return exc.failure
        deadline = self.deadline
        if deadline is None:  # run or next: a Slurm job's end, if in one
            deadline = Deadline.for_loop(self.connection, project=None, time_limit=None)
        return failures.WALL if deadline.near_end() else failures.CANCELLED

    # ------------------------------------------------------------------------ one dataset

    def context_for(self, claimed: Claim) -> RunContext:
        """What the stages of the claimed dataset share, in its folder under --directory."""
        config = self.config
        workdir = config.directory / claimed.project.slug / claimed.dataset.slug.split(":", 1)[-1]
        return RunContext(
            config=config, connection=self.connection, claim=claimed, workdir=workdir,
            shutdown=self.shutdown, diagnostics=self.diagnostics,
            runner=self.runner(claimed.project), memory=self.memory, seconds=self.seconds,
            ends_at=self.ends_at,
        )  # fmt: skip

    def process(self, claimed: Claim, *, then: NextRequest | None = None) -> Outcome:
        """Run the stages on a claimed dataset. A stage's Fail ends the dataset, not the client.

        With ``then`` (a ``next_request``) the Upload Success also claims the next dataset,
        kept in ``prefetched``. Raises Interrupted after releasing the claim when a signal
        asked us to stop.
        """
        config = self.config
        started = time.monotonic()
        context = self.context_for(claimed)
        workdir = context.workdir
        logger.info("Claimed dataset %s (claim %s)", context.slug, context.claim.id)
        try:
            with self.beating() as heartbeat, heartbeat.watching(context):
                for stage in self.stages:
                    stage(context)()
                try:
                    answer = context.send(next=then)  # the last Success, and the next claim
                except ResultsRefused as exc:  # that Success was not recorded: say why
                    raise results.fail_refused(context, exc) from exc
                if answer.next is not None:
                    self.prefetched = answer.next
        except StageFailed as exc:  # said once: by the loop, or by run's and next's error
            return Outcome(
                dataset=context.slug, completed=False, retrying=exc.retrying, note=str(exc),
                seconds=time.monotonic() - started, exit_code=exc.exit_code,
                retry_at=exc.retry_at,
            )  # fmt: skip
        except ClaimLost as exc:
            return Outcome(
                dataset=context.slug, completed=False, lost=True, note=str(exc),
                seconds=time.monotonic() - started,
            )  # fmt: skip
        except Interrupted as exc:
            self.release(
                context, note=f"{exc} The dataset was released to be processed again.",
                failure=self.release_failure(exc),
            )  # fmt: skip
            raise
        finally:
            context.setup_checksums.stop()  # a failed dataset's files need no checksums
            context.stop_lingering()
            if context.taken is not None:  # taken with a refused status: run it next
                self.prefetched = context.taken
        if config.cleanup:
            remove_work_folder(config.directory, workdir)
        return Outcome(dataset=context.slug, completed=True, seconds=time.monotonic() - started)

    # ------------------------------------------------------------------------ the commands

    def run_dataset(self, slug: str) -> Outcome:
        """Claim the dataset ``slug`` and process it; StageFailed if it does not complete."""
        dataset = self.connection.dataset(slug)
        work_folder(self.config.directory, dataset.project, dataset.slug)  # before claiming
        self.check_project(self.connection.project(dataset.project))
        with self.signals(), self.beating():
            claimed = self.connection.claim_dataset(
                slug, holder=self.config.holder, lease_seconds=self.config.lease_seconds
            )
            outcome = self.process(claimed)
        return finished(outcome)

    def run_next(self, *, project: str | None = None) -> Outcome | None:
        """Claim the next pending dataset and process it; None when nothing is pending."""
        if project:
            self.check_project(self.connection.project(project))
        with self.signals(), self.beating():
            claimed = self.claim_next(project)
            if claimed is None:
                return None
            outcome = self.process(claimed)
        return finished(outcome)

    # One loop's life reads top to bottom: claim, run, count, wait, stop.
    def run_loop(  # noqa: C901, PLR0915
        self, *, project: str | None = None, max_datasets: int | None = None,
        time_limit: float | None = None, wait: float | None = None,
    ) -> LoopSummary:  # fmt: skip
        """Process datasets until none is pending, a limit is reached or a signal arrives.

        With ``wait``, "none pending" while other clients still hold datasets means checking
        again after ``wait`` seconds: a dataset whose client dies comes back when its lease
        expires, and a waiting loop picks it up.
        """
        connection = self.connection
        if project:
            self.check_project(connection.project(project))
        started = time.monotonic()
        processed = failed = retried = 0
        ended: dict[str, Outcome] = {}
        slowest = 0.0
        deadline = Deadline.for_loop(connection, project=project, time_limit=time_limit)
        self.deadline = deadline
        self.ends_at = None if time_limit is None else started + time_limit
        reason = "nothing pending"
        with self.signals() as shutdown, self.beating():
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
                    claimed = self.claim_next(project)
                except ServerError as exc:
                    if processed == 0:
                        raise
                    logger.warning("Stopping the loop: %s", exc)
                    reason = (
                        "project paused" if isinstance(exc, ProjectPaused) else "server unreachable"
                    )
                    break
                if claimed is None:
                    if wait is None or not (running := connection.running_count(project)):
                        break
                    logger.info(
                        "Nothing pending; %d dataset(s) held by other clients; "
                        "checking again in %gs", running, wait,
                    )  # fmt: skip
                    shutdown.event.wait(wait)
                    continue
                # The dataset that reaches --max-datasets claims no next one with its Upload.
                counted = len(ended) + (claimed.dataset.slug not in ended)
                last = max_datasets is not None and counted >= max_datasets
                then = None if last else self.next_request(project)
                try:
                    outcome = self.process(claimed, then=then)
                except failures.OutOfTime:
                    reason = f"--time-limit {time_limit:g}s reached"
                    break
                except Interrupted:
                    reason = f"stopped by {shutdown.signal_name}"
                    break
                # Datasets, not claims: one retried and claimed again counts once, as it ended.
                ended[outcome.dataset] = outcome
                processed = len(ended)
                retried = sum(o.retrying for o in ended.values())
                failed = sum(not o.completed and not o.retrying for o in ended.values())
                slowest = max(slowest, outcome.seconds)
                log = logger.info if outcome.completed else logger.warning
                log("%s", outcome.summary())
            self.give_back_prefetched(reason)
        waiting = [o.retry_at for o in ended.values() if o.retrying and o.retry_at]
        return LoopSummary(
            processed=processed, failed=failed, retried=retried,
            seconds=time.monotonic() - started, reason=reason, interrupted=shutdown.requested,
            retry_at=max(waiting, default=""),
        )  # fmt: skip


def require_apptainer(what: str) -> None:
    """A Snakefile with per-rule containers needs Apptainer (or Singularity) on the node."""
    if not any(shutil.which(name) for name in ("apptainer", "singularity")):
        raise ConfigurationError(
            f"{what} names containers for its rules, which Snakemake runs with Apptainer: "
            "install apptainer (or singularity) on this node, or set one container on the "
            "project instead."
        )
