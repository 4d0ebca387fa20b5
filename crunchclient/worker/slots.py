"""SlotLoop: one process that keeps up to N datasets running at once (``crunch loop --slots N``).

Each slot is a thread that runs one dataset after another as a single loop does
(``Worker.process``): its own folder, RunContext, stages, statuses and outcome, its own
cores and GPUs. The slots share what a single loop has once: the diagnostics, the runners,
the signal handlers, one Batcher for statuses and claims (batcher.py), one heartbeat that
renews every held claim in one call (heartbeat.Renewals) and the transfer limit (--jobs is
per process). --max-datasets counts datasets across the slots; --time-limit, the job's
wall time and a signal stop each slot before its next claim.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from crunchclient.exceptions import Interrupted, ProjectPaused, ServerError
from crunchclient.server.bodies import NextRequest
from crunchclient.server.connection import Connection
from crunchclient.server.wire import Claim, ProjectInfo
from crunchclient.settings.config import ClientConfig
from crunchclient.transfer.parallel import shared_jobs
from crunchclient.worker import diagnostics, failures
from crunchclient.worker.batcher import Batcher
from crunchclient.worker.context import RunContext
from crunchclient.worker.deadline import Deadline
from crunchclient.worker.heartbeat import Renewals
from crunchclient.worker.outcomes import LoopSummary, Outcome
from crunchclient.worker.shutdown import Shutdown
from crunchclient.worker.worker import Worker
from crunchclient.worker.workflow.runners import Runner

logger = logging.getLogger(__name__)

NOTHING = "nothing pending"


class SlotWorker(Worker):
    """One slot: the stages of one dataset after another, on the loop's shared parts."""

    def __init__(self, config: ClientConfig, loop: SlotLoop) -> None:
        super().__init__(config, connection=loop.connection.clone())
        self.loop = loop
        self.shutdown = loop.shutdown
        self._diagnostics = loop.diagnostics
        self._heartbeat = loop.renewals
        self.runners = loop.runners
        self.nothing_pending = False
        """The last ask for a claim found none: the slot asks no more unless it waits."""

    @property
    def slot(self) -> int:
        return self.config.slot or 0

    def runner(self, project: ProjectInfo) -> Runner:
        with self.loop.lock:
            return super().runner(project)

    def check_project(self, project: ProjectInfo) -> None:
        with self.loop.lock:  # once per image for the whole loop
            super().check_project(project)

    def next_request(self, project: str | None) -> NextRequest:
        """A claim for this slot: its Setup Start names the slot, the loop names itself."""
        request = super().next_request(project)
        return replace(request, slots=(self.slot,), client=self.loop.client)

    def fetch_claim(self, project: str | None) -> Claim | None:
        claims = self.loop.batcher.claim(self.next_request(project))
        return claims[0] if claims else None

    def context_for(self, claimed: Claim) -> RunContext:
        context = super().context_for(claimed)
        context.batcher = self.loop.batcher
        return context

    def run_slot(self, project: str | None, wait: float | None) -> str:
        """Process datasets until the loop says stop or none is pending; why it stopped."""
        loop = self.loop
        while True:
            if reason := loop.stop_reason():
                return reason
            if self.prefetched is None and not self.nothing_pending and not loop.reserve():
                return loop.max_reason
            try:
                claimed = None if self.nothing_pending else self.claim_next(project)
            except ServerError as exc:
                if not loop.finished:
                    raise  # as a single loop: the first claim's error is the loop's
                logger.warning("Slot %d stops: %s", self.slot, exc)
                return "project paused" if isinstance(exc, ProjectPaused) else "server unreachable"
            self.nothing_pending = False
            if claimed is None:
                loop.unreserve()
                if wait is None or not (running := self.connection.running_count(project)):
                    return NOTHING
                logger.info(
                    "Slot %d: nothing pending; %d dataset(s) held by clients (this loop's "
                    "included); checking again in %gs", self.slot, running, wait,
                )  # fmt: skip
                self.shutdown.event.wait(wait)
                continue
            if not loop.counts(claimed):
                loop.unreserve()
            then = self.next_request(project) if loop.reserve() else None
            outcome = self.process(claimed, then=then)
            if then is not None and self.prefetched is None:
                loop.unreserve()
                # Only a completed dataset's Upload Success asked for the next claim: after a
                # Fail none was asked, and the slot claims again.
                self.nothing_pending = outcome.completed
            loop.ended(outcome)
            log = logger.info if outcome.completed else logger.warning
            log("Slot %d: %s", self.slot, outcome.summary())

    def run(self, project: str | None, wait: float | None) -> None:
        """The slot thread: its reason to stop, or its error, go to the loop."""
        reason = ""
        try:
            reason = self.run_slot(project, wait)
        except failures.OutOfTime:
            reason = f"--time-limit {self.loop.time_limit:g}s reached"
        except Interrupted:
            reason = f"stopped by {self.shutdown.signal_name}"
        except BaseException as exc:  # said by the main thread, which raises it
            self.loop.fail(exc)
            reason = f"slot {self.slot} failed"
        finally:
            self.give_back_prefetched(reason or "stopping")
            self.loop.stopped(reason)


class SlotLoop:
    """Up to N datasets at once in one process; ``run_loop`` as ``Worker.run_loop``."""

    def __init__(self, configs: list[ClientConfig]) -> None:
        config = self.config = configs[0]
        self.connection = Connection(
            config.url, config.token, retry_for=config.retry_for,
            start_retry_for=config.start_retry_for,
        )  # fmt: skip
        self.shutdown = Shutdown()
        self.diagnostics = diagnostics.collect(config.directory)
        self.runners: dict[str, Runner] = {}
        self.lock = threading.RLock()
        self.batcher = Batcher(self.connection.clone())
        found = {
            "holder": config.holder, "slots": len(configs),
            "hostname": self.diagnostics.hostname, "slurm_job_id": self.diagnostics.slurm_job_id,
            "slurm_array_task_id": self.diagnostics.slurm_array_task_id,
        }  # fmt: skip
        self.client = {name: value for name, value in found.items() if value}
        """The loop as the pages show it: its slots, where it runs."""
        self.renewals = Renewals(
            self.connection, config, client=self.client, batches=lambda: self.batcher.batches
        )
        self.workers = [SlotWorker(slot_config, self) for slot_config in configs]
        self.outcomes: dict[str, Outcome] = {}
        self.taken = 0  # datasets claimed or being claimed, for --max-datasets
        self.max_datasets: int | None = None
        self.reasons: list[str] = []
        self.errors: list[BaseException] = []
        self.slowest = 0.0
        self.started = time.monotonic()
        self.time_limit: float | None = None
        self.deadline: Deadline | None = None

    # ------------------------------------------------------------------------ the slots' calls

    @property
    def max_reason(self) -> str:
        return f"reached --max-datasets {self.max_datasets}"

    @property
    def finished(self) -> int:
        return len(self.outcomes)

    def reserve(self) -> bool:
        """Count one more dataset toward --max-datasets, if one more may be taken."""
        with self.lock:
            if self.max_datasets is not None and self.taken >= self.max_datasets:
                return False
            self.taken += 1
            return True

    def unreserve(self) -> None:
        with self.lock:
            self.taken = max(0, self.taken - 1)

    def counts(self, claimed: Claim) -> bool:
        """Whether the claim is of a dataset not counted yet (one retried counts once)."""
        with self.lock:
            return claimed.dataset.slug not in self.outcomes

    def ended(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[outcome.dataset] = outcome
            self.slowest = max(self.slowest, outcome.seconds)

    def stopped(self, reason: str) -> None:
        with self.lock:
            self.reasons.append(reason)

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)

    def stop_reason(self) -> str | None:
        """Why no slot may claim now; None when one may."""
        if self.shutdown.requested:
            return f"stopped by {self.shutdown.signal_name}"
        if self.errors:
            return "another slot failed"
        elapsed = time.monotonic() - self.started
        if self.time_limit is not None and elapsed + self.slowest > self.time_limit:
            return f"--time-limit {self.time_limit:g}s nearly reached"
        if self.deadline is not None:
            with self.lock:
                return self.deadline.stop_reason(self.slowest)
        return None

    # ------------------------------------------------------------------------ the loop

    def run_loop(
        self, *, project: str | None = None, max_datasets: int | None = None,
        time_limit: float | None = None, wait: float | None = None,
    ) -> LoopSummary:  # fmt: skip
        """Run the slots until each has stopped; the summary counts every slot's datasets."""
        first = self.workers[0]
        if project:
            first.check_project(self.connection.project(project))
        self.max_datasets, self.time_limit = max_datasets, time_limit
        self.started = time.monotonic()
        self.deadline = Deadline.for_loop(self.connection, project=project, time_limit=time_limit)
        for worker in self.workers:
            worker.deadline = self.deadline
            worker.ends_at = None if time_limit is None else self.started + time_limit
        with self.shutdown.installed(), shared_jobs(self.config.jobs), self.running():
            if not self.stop_reason():
                self.hand_out_first(project)
            threads = [
                threading.Thread(
                    target=worker.run, args=(project, wait), name=f"crunch slot {worker.slot}"
                )
                for worker in self.workers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():  # in steps: the main thread handles the signals
                    thread.join(0.2)
        if self.errors:
            raise self.errors[0]
        return self.summary()

    def hand_out_first(self, project: str | None) -> None:
        """One claim of as many datasets as there are slots, one to each."""
        wanted = 0
        while wanted < len(self.workers) and self.reserve():
            wanted += 1
        if not wanted:
            return
        request = self.workers[0].next_request(project)
        claims = self.batcher.claim(replace(request, count=wanted, slots=tuple(range(wanted))))
        for _ in range(wanted - len(claims)):
            self.unreserve()
        for index, worker in enumerate(self.workers[:wanted]):
            worker.prefetched = claims[index] if index < len(claims) else None
            worker.nothing_pending = worker.prefetched is None  # none was pending just now

    @contextmanager
    def running(self) -> Iterator[None]:
        """The batcher and heartbeat threads, for the loop's life."""
        self.batcher.start()
        self.renewals.start()
        try:
            yield
        finally:
            self.renewals.stop()
            self.batcher.stop()
            for worker in self.workers:
                worker.connection.close()

    def summary(self) -> LoopSummary:
        ended = list(self.outcomes.values())
        retried = sum(outcome.retrying for outcome in ended)
        failed = sum(not outcome.completed and not outcome.retrying for outcome in ended)
        waiting = [o.retry_at for o in ended if o.retrying and o.retry_at]
        reasons = [reason for reason in self.reasons if reason and reason != NOTHING]
        reason = f"stopped by {self.shutdown.signal_name}" if self.shutdown.requested else ""
        return LoopSummary(
            processed=len(ended), failed=failed, retried=retried,
            seconds=time.monotonic() - self.started,
            reason=reason or (reasons[0] if reasons else NOTHING),
            interrupted=self.shutdown.requested, retry_at=max(waiting, default=""),
        )  # fmt: skip
