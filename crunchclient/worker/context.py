"""RunContext: what the stages of one dataset share, and how its statuses reach the server."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crunch.choices import Stage as StageNumber
from crunch.choices import State
from crunchclient.exceptions import ClaimLost, ClientError, Interrupted, UnsafePathError
from crunchclient.server.bodies import Diagnostics, NextRequest, StatusReport
from crunchclient.server.connection import Connection
from crunchclient.server.files import ServerBackend
from crunchclient.server.wire import Claim, DatasetInfo, ProjectInfo, StatusAnswer
from crunchclient.settings.config import ClientConfig
from crunchclient.settings.secrets import redact
from crunchclient.transfer.hashing import Checksums, Digests
from crunchclient.transfer.paths import make_work_folder, work_folder
from crunchclient.worker.batcher import LINGER, Batcher, refusal
from crunchclient.worker.records import RECORDS, SETUP_CHECKSUMS, is_record, write_json
from crunchclient.worker.shutdown import Shutdown
from crunchclient.worker.workflow.runners import Runner

if TYPE_CHECKING:
    from crunchclient.worker.failures import Failure

logger = logging.getLogger(__name__)

CONFIRMED_SECONDS = 2.0
"""A loop with slots sends a dataset's Upload Start without waiting for its answer when
the server confirmed the claim within this many seconds; else it waits, so that no file is
uploaded for a claim that was lost meanwhile (a maintainer's release, an expired lease)."""

NOTE_BYTES = 8 * 1024
"""The most a note sends (in UTF-8): a workflow's 3 MB stderr line must not stop its Fail."""


@dataclass(kw_only=True)
class RunContext:
    """What the stages of one dataset share: the claim, the folder and the stop flags."""

    config: ClientConfig
    connection: Connection
    claim: Claim
    workdir: Path
    shutdown: Shutdown = field(default_factory=Shutdown)
    lost: threading.Event = field(default_factory=threading.Event)
    diagnostics: Diagnostics | None = None
    setup_checksums: Checksums = field(default_factory=lambda: Checksums({}))
    output_hashes: Digests = field(default_factory=dict)  # hashed while the workflow ran
    setup_written: dict[str, str] | None = None
    """Setup's MD5s as recorded in .crunch/ (once: Setup, or Upload when still hashing)."""
    held: list[StatusReport] = field(default_factory=list)
    """Statuses not sent yet: a stage's Success goes with the next Start, in one call."""
    through_server: ServerBackend | None = None
    runner: Runner | None = None
    """How the workflow starts (sandbox, container); None: as it is, with no isolation."""
    batcher: Batcher | None = None
    """A loop with slots: the statuses go with the other slots' (see batcher.py)."""
    confirmed: float = field(default_factory=time.monotonic)
    """When (time.monotonic()) the server last said the claim was held: the claim's own
    answer, then each call that recorded one of its statuses."""
    sending: threading.RLock = field(default_factory=threading.RLock)
    """Held while statuses are taken and sent: the lingering Start's timer sends too."""
    later: threading.Timer | None = None
    taken: Claim | None = None
    """The next claim that the last call took though one of its statuses was refused."""
    memory: int | None = None
    """Bytes of memory the workflow has (failures.task_memory), sent with a Fail."""
    seconds: int | None = None
    """Seconds the workflow may run (--timeout), sent with a Fail."""
    ends_at: float | None = None
    """When the loop's --time-limit ends (time.monotonic()): a workflow still running then
    is stopped and its dataset released (time-limit, wall-time)."""
    stale_results: bool = False
    """An earlier run's results file was in .crunch/: removed before the workflow ran, so
    that this run's results, even none, replace it (worker/results.py)."""

    @property
    def storage(self) -> Any:
        """Where the dataset's files are: the Django storage of direct transfers, or the
        crunch server (``--transfer server``), which lets this claim write its folder only."""
        if self.config.transfer == "direct":
            return self.config.storage
        if self.through_server is None:
            self.through_server = ServerBackend(
                self.connection, self.slug, self.prefix, claim=str(self.claim.id),
                jobs=self.config.jobs,
            )  # fmt: skip
        return self.through_server

    @property
    def dataset(self) -> DatasetInfo:
        return self.claim.dataset

    @property
    def project(self) -> ProjectInfo:
        return self.claim.project

    @property
    def slug(self) -> str:
        return self.claim.dataset.slug

    @property
    def records(self) -> Path:
        return self.workdir / RECORDS

    @property
    def prefix(self) -> str:
        """The dataset's folder in storage, refused if it would lead out of the storage."""
        return self.dataset.folder

    def make_workdir(self) -> None:
        """Make the dataset's folder under --directory, refused (UnsafePathError) unless
        the server's slugs name one inside it and no link takes it out."""
        directory = self.config.directory
        folder = work_folder(directory, self.project.slug, self.slug)
        if folder != self.workdir:
            raise UnsafePathError(
                f"Refusing the folder {str(self.workdir)!r} of dataset {self.slug!r}: it is "
                f"not {str(folder)!r}."
            )
        make_work_folder(directory, folder)

    def report(
        self, stage: StageNumber, state: State, note: str = "",
        extra: dict[str, Any] | None = None, *, hold: bool = False,
        failure: Failure | None = None,
    ) -> StatusAnswer:  # fmt: skip
        """Post a status; return the server's answer (with the dataset's new state).

        With ``hold`` it waits to go with the next one (see ``send``) and answers nothing.
        A Fail carries its ``failure`` (the reason) and the memory and time the run had.
        """
        report = StatusReport(
            dataset=self.dataset.id, stage=stage, state=state, claim=str(self.claim.id),
            note=head_bytes(redact(note, self.config.secrets), NOTE_BYTES),
            diagnostics=self.diagnostics, extra=extra or {}, slot=self.config.slot,
        )  # fmt: skip
        if state == State.FAIL:
            report = replace(
                report, reason=failure.reason if failure else "",
                reason_detail=failure.detail if failure else "", memory=self.memory,
                seconds=self.seconds,
            )  # fmt: skip
        if hold:
            self.held.append(report)
            return StatusAnswer()
        if self.rides_along(stage, state):
            with self.sending:
                self.held.append(report)
            return StatusAnswer()
        if self.batcher is None and (stage, state) == (StageNumber.WORKFLOW, State.START):
            # It needs no answer (the heartbeat watches the claim): it goes with the Upload
            # Start, or alone after LINGER seconds of a longer workflow, so the pages show
            # the stage. A single loop spends one call less per dataset.
            with self.sending:
                self.held.append(report)
                if self.later is None:
                    self.later = threading.Timer(LINGER, self.send_lingering)
                    self.later.daemon = True
                    self.later.start()
            return StatusAnswer()
        return self.send(report)

    def rides_along(self, stage: StageNumber, state: State) -> bool:
        """Whether a single loop's Upload Start goes with its Upload Success and the next
        claim, in one call, rather than waiting for its own answer: when the server takes
        that call and confirmed the claim a moment ago (CONFIRMED_SECONDS), as with slots."""
        return (
            self.batcher is None
            and (stage, state) == (StageNumber.UPLOAD, State.START)
            and self.connection.batches
            and time.monotonic() - self.confirmed <= CONFIRMED_SECONDS
        )

    def send_lingering(self) -> None:
        """Send the statuses still held once they waited LINGER seconds (on the timer's thread)."""
        with self.sending:
            if self.later is None:
                return  # sent with another call meanwhile
            self.later = None
            reports, self.held = self.held, []
            try:
                self.send_reports(reports)
            except ClaimLost as exc:
                logger.warning("%s", exc)  # the stages stop at their next check
            except ClientError as exc:  # they go with the next call
                logger.warning("%s: %s", self.slug, exc)
                self.held[:0] = reports

    def stop_lingering(self) -> None:
        """The dataset ended: nothing is sent later (a Fail or a release sent what was held)."""
        with self.sending:
            if self.later is not None:
                self.later.cancel()
                self.later = None

    def send(
        self, report: StatusReport | None = None, *, next: NextRequest | None = None
    ) -> StatusAnswer:
        """Post the held statuses and ``body`` in order, in as few calls as the API allows;
        with ``next`` the last of them also claims the next dataset. The last one's answer."""
        with self.sending:
            if self.later is not None:
                self.later.cancel()
                self.later = None
            reports, self.held = [*self.held, *([report] if report else [])], []
            return self.send_reports(reports, next=next)

    def send_reports(
        self, reports: list[StatusReport], *, next: NextRequest | None = None
    ) -> StatusAnswer:
        if not reports:
            return StatusAnswer()
        last = reports[-1]
        try:
            if self.batcher is not None:
                # A Start needs no answer: it goes with the next call of any slot. Not the
                # Upload Start: no file is sent over the dataset's folder before the server
                # says the claim is still ours (else a lost claim's late upload could
                # overwrite the next holder's files).
                # It rides along when the claim was confirmed a moment ago (CONFIRMED_SECONDS),
                # a window no longer than the upload's own.
                unsure = time.monotonic() - self.confirmed > CONFIRMED_SECONDS
                needs_answer = last.state != State.START or (
                    last.stage == StageNumber.UPLOAD and unsure
                )
                return self.batcher.send(
                    reports, next=next, wait=next is not None or needs_answer, lost=self.lost,
                    confirmed=self.confirm,
                )  # fmt: skip
            sent = time.monotonic()
            if len(reports) > 1 and next is not None and self.connection.batches:
                answer = self.send_together(reports, next)
            elif len(reports) > 1 and next is None:
                answer = self.connection.post_statuses(reports)[-1]
            else:
                if len(reports) > 1:
                    self.connection.post_statuses(reports[:-1])
                answer = self.connection.send_status(last, next=next)
            self.confirm(sent)
            return answer
        except ClaimLost as exc:
            # Refused before the heartbeat noticed: say the same as when it does.
            if (last.stage, last.state) == (StageNumber.UPLOAD, State.SUCCESS):
                raise  # the files were sent already
            self.lost.set()
            raise self.claim_lost() from exc

    def send_together(self, reports: list[StatusReport], then: NextRequest) -> StatusAnswer:
        """A single loop's statuses and its next claim in one call (statuses/batch/'s
        object form); the last status's answer, with the claim as its ``next``. A claim
        taken beside a refused status is kept in ``taken``, for the loop to run next."""
        answer = self.connection.post_batch(reports, next=replace(then, count=1))
        for result, report in zip(answer.results, reports, strict=True):
            if not result.recorded:
                self.taken = answer.claims[0] if answer.claims else None
                raise refusal(result, report)
        last = answer.results[-1].answer or StatusAnswer()
        return replace(last, next=answer.claims[0] if answer.claims else None)

    def confirm(self, when: float) -> None:
        """The server recorded a status of the claim in a call sent at ``when``."""
        self.confirmed = max(self.confirmed, when)

    def claim_lost(self) -> ClaimLost:
        return ClaimLost(
            f"The server no longer holds the claim on dataset {self.slug!r}; "
            "stopped without uploading."
        )

    def write_setup_checksums(self) -> dict[str, str]:
        """Wait for the MD5s of the downloaded files, write their record (once) and return
        them."""
        if self.setup_written is not None:
            return self.setup_written
        if not self.setup_checksums.done():
            logger.info("%s: waiting for the checksums of the downloaded files", self.slug)
        checksums = self.setup_checksums.result(self.check)
        setup = {path: md5 for path, md5 in checksums.items() if not is_record(path)}
        write_json(self.records / SETUP_CHECKSUMS, setup)
        self.setup_written = setup
        return setup

    def check(self) -> None:
        """Stop the dataset if the server dropped our claim or a signal asked us to stop."""
        if self.lost.is_set():
            raise self.claim_lost()
        if self.shutdown.requested:
            raise Interrupted(f"Received {self.shutdown.signal_name}: the client was stopped.")


def head_bytes(text: str, limit: int) -> str:
    """The start of text, at most limit bytes of UTF-8, cut between two characters."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    marker = f" [{len(data) - limit:,} bytes cut]"
    kept = data[: max(0, limit - len(marker))]
    return kept.decode("utf-8", "ignore") + marker
