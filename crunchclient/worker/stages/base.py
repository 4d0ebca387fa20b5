"""Stage: reports Start, runs, reports Success or Fail. The one place catching Exception."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from crunch.choices import Stage as StageNumber
from crunch.choices import State
from crunchclient.exceptions import ClaimLost, Interrupted, StageFailed, UnsafePathError
from crunchclient.settings.secrets import redact
from crunchclient.worker import failures
from crunchclient.worker.context import NOTE_BYTES, RunContext, head_bytes

logger = logging.getLogger(__name__)

LINE_CHARS = 500  # the most of one line of a note that a one-line message shows


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

    def success_fields(self) -> dict[str, Any]:
        """Fields the stage's Success status carries besides the usual ones."""
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
            failure = failures.of_error(exc, self.number)
            logger.debug("%s: %s failed: %s", context.slug, self.name, failure)
            answer = context.report(self.number, State.FAIL, note, failure=failure)
            retrying = answer.retrying
            raise StageFailed(
                f"Dataset {context.slug!r} failed at {self.name}"
                f"{' (it will be retried)' if retrying else ''}: {first_line(note)}",
                retrying=retrying,
                retry_at=answer.dataset_retry_at,
                exit_code=UnsafePathError.exit_code if isinstance(exc, UnsafePathError) else None,
            ) from exc
        logger.info("%s: %s succeeded%s", context.slug, self.name, f": {note}" if note else ".")
        context.report(self.number, State.SUCCESS, note, self.success_fields(), hold=True)


def failure_note(exc: BaseException) -> str:
    """What the Fail status says: our own errors as they are, others with their type."""
    from crunchclient.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
