"""Stage: reports Start, runs, reports Success or Fail. The one place catching Exception."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from crunch.choices import Stage as StageNumber
from crunch.choices import State
from crunchclient.bodies import status_body
from crunchclient.bootstrap import redact
from crunchclient.config import ClientConfig
from crunchclient.connection import Connection
from crunchclient.exceptions import ClaimLost, Interrupted, StageFailed, UnsafePathError
from crunchclient.hashing import Checksums, Digests
from crunchclient.records import RECORDS
from crunchclient.shutdown import Shutdown
from crunchclient.transfer.paths import dataset_prefix, make_work_folder, work_folder
from crunchclient.wire import Claim, DatasetInfo, ProjectInfo

logger = logging.getLogger(__name__)

NOTE_BYTES = 8 * 1024
"""The most a note sends (in UTF-8): a workflow's 3 MB stderr line must not stop its Fail."""
LINE_CHARS = 500  # the most of one line of a note that a one-line message shows


@dataclass(kw_only=True)
class RunContext:
    """What the stages of one dataset share: the claim, the folder and the stop flags."""

    config: ClientConfig
    connection: Connection
    claim: Claim
    workdir: Path
    shutdown: Shutdown = field(default_factory=Shutdown)
    lost: threading.Event = field(default_factory=threading.Event)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    setup_checksums: Checksums = field(default_factory=lambda: Checksums({}))
    output_hashes: Digests = field(default_factory=dict)  # hashed while the workflow ran
    held: list[dict[str, Any]] = field(default_factory=list)
    """Statuses not sent yet: a stage's Success goes with the next Start, in one call."""

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
        return dataset_prefix(self.dataset.base_file_path, self.slug)

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
    ) -> dict[str, Any]:  # fmt: skip
        """Post a status; return the server's answer (with the dataset's new state).

        With ``hold`` it waits to go with the next one (see ``send``) and answers nothing.
        """
        body = status_body(
            dataset=self.dataset.id, stage=stage, state=state, claim=str(self.claim.id),
            note=head_bytes(redact(note, self.config.secrets), NOTE_BYTES),
            diagnostics=self.diagnostics, extra=extra,
        )  # fmt: skip
        if hold:
            self.held.append(body)
            return {}
        return self.send(body)

    def send(
        self, body: dict[str, Any] | None = None, *, next: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Post the held statuses and ``body`` in order, in as few calls as the API allows;
        with ``next`` the last of them also claims the next dataset. The last one's answer."""
        bodies, self.held = [*self.held, *([body] if body else [])], []
        if not bodies:
            return {}
        last = bodies[-1]
        try:
            if len(bodies) > 1 and next is None:
                return self.connection.post_statuses(bodies)[-1]
            if len(bodies) > 1:
                self.connection.post_statuses(bodies[:-1])
            return self.connection.send_status(last, next=next)
        except ClaimLost as exc:
            # Refused before the heartbeat noticed: say the same as when it does.
            if (last["stage"], last["state"]) == (StageNumber.UPLOAD, State.SUCCESS):
                raise  # the files were sent already
            self.lost.set()
            raise self.claim_lost() from exc

    def claim_lost(self) -> ClaimLost:
        return ClaimLost(
            f"The server no longer holds the claim on dataset {self.slug!r}; "
            "stopped without uploading."
        )

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


def tail_bytes(data: bytes, limit: int) -> str:
    """The end of data, at most limit bytes, decoded from the first whole UTF-8 character."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace")
    kept = data[len(data) - limit :]
    start = 0
    while start < min(4, len(kept)) and kept[start] & 0xC0 == 0x80:  # continuation bytes
        start += 1
    return kept[start:].decode("utf-8", "replace")


def first_line(text: str) -> str:
    """A note in one line: its first line, and its last when there are more (the error)."""
    lines = [shortened(line.strip()) for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} ... {lines[-1]}"
    return lines[0] if lines else ""


def shortened(line: str, limit: int = LINE_CHARS) -> str:
    return line if len(line) <= limit else f"{line[: limit - 1]}\u2026"


class Stage:
    """One of Setup, Workflow, Upload. Subclasses do the work in ``run()``."""

    number: ClassVar[StageNumber]

    def __init__(self, context: RunContext) -> None:
        self.context = context

    @property
    def name(self) -> str:
        return str(self.number.label)

    def run(self) -> str:
        """Do the stage's work; return the note of its Success status."""
        raise NotImplementedError

    def failed(self) -> None:
        """Called before the Fail status is posted: keep what helps explain the failure."""

    def start_fields(self) -> dict[str, Any]:
        """Fields the stage's Start status carries besides the usual ones."""
        return {}

    def __call__(self) -> None:
        context = self.context
        context.check()
        # One line per stage, when it ends: its Success note, or the dataset's failure.
        logger.debug("%s: %s started", context.slug, self.name)
        if not (self.number == StageNumber.SETUP and context.claim.started):
            context.report(self.number, State.START, extra=self.start_fields())
        try:
            note = self.run()
        except (ClaimLost, Interrupted):
            raise
        except Exception as exc:  # any failure of the stage is the dataset's Fail status
            note = head_bytes(redact(failure_note(exc), context.config.secrets), NOTE_BYTES)
            logger.debug("%s: %s failed", context.slug, self.name, exc_info=True)
            try:
                self.failed()
            except Exception as extra:  # the Fail status matters more than its log
                logger.warning("%s: %s", context.slug, failure_note(extra))
            answer = context.report(self.number, State.FAIL, note)
            retrying = answer.get("dataset_state") == "pending"
            raise StageFailed(
                f"Dataset {context.slug!r} failed at {self.name}"
                f"{' (it will be retried)' if retrying else ''}: {first_line(note)}",
                retrying=retrying,
                retry_at=str(answer.get("dataset_retry_at") or ""),
                exit_code=UnsafePathError.exit_code if isinstance(exc, UnsafePathError) else None,
            ) from exc
        logger.info("%s: %s succeeded%s", context.slug, self.name, f": {note}" if note else ".")
        context.report(self.number, State.SUCCESS, note, hold=True)


def failure_note(exc: BaseException) -> str:
    """What the Fail status says: our own errors as they are, others with their type."""
    from crunchclient.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
