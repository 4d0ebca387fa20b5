"""Recording a client's status report and moving the dataset's state with it."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from crunch.choices import DatasetState, FailReason, Stage, State
from crunch.db import statements
from crunch.db.statements import Condition, Locked
from crunch.exceptions import ClaimConflict, InvalidResults, LeaseExpired, NotAllowed
from crunch.models import Dataset, Status
from crunch.services.claims import (
    CLEARED_CLAIM,
    claim_values,
    is_legacy_claim,
    lease_until,
    legacy_claim_id,
    refuse_paused,
)
from crunch.services.notes import cut_note
from crunch.services.results import store
from crunch.services.retry_policy import Policy, after_fail, needs_after

DIAGNOSTIC_FIELDS = (
    "agent_user", "version", "revision", "system", "system_release", "system_version",
    "machine", "hostname", "ip_address", "mac_address", "slurm_job_id", "slurm_array_task_id",
    "memory_total", "memory_free", "disk_total", "disk_free",
)  # fmt: skip


def record_status(  # noqa: PLR0913 (keyword-only: the parts of one status)
    *,
    dataset: Dataset | int | str,
    stage: Stage | int,
    state: State | int,
    note: str = "",
    claim_id: uuid.UUID | None = None,
    key: str | None = None,
    user: Any = None,
    diagnostics: dict[str, Any] | None = None,
    workflow_sha256: str = "",
    image_digest: str = "",
    slot: int | None = None,
    failure: Failure | None = None,
    results: Mapping[str, Any] | None = None,
    may_start: Callable[[Dataset], None] | None = None,
    allowed: Condition | None = None,
    savepoint: bool = True,
) -> tuple[Status, bool]:
    """Append a status and move the dataset's state in one transaction.

    ``dataset`` is a Dataset, its id or its slug (Dataset.DoesNotExist when there is none).
    Returns the status and whether it was created; a status whose ``key`` this user
    already recorded on this dataset (a retried post) is returned as it is, not recorded
    twice. Another user's key, or one used on another dataset, is no retry: keys are
    scoped so that no one is ever answered with someone else's status. The note is held
    to CRUNCH_NOTE_MAX_BYTES (crunch.services.notes.cut_note). A Fail records ``failure``
    (its reason; ``unknown`` when the client named none, as django-crunch 0.1 clients), and
    the project's retry policy says what becomes of the dataset. An Upload Success's
    ``results`` replace the dataset's in the same transaction (crunch.services.results.store);
    results the project's schema refuses refuse the status (InvalidResults).

    With ``claim_id`` the claim must still be held, by ``user`` when one is given (else
    LeaseExpired). Without one, as django-crunch 0.1 clients post, a Setup Start claims a
    free dataset for this user and host (after ``may_start(dataset)``, which raises when
    the user may not); any other status needs the dataset held by this user and host
    through such a claim without an id of its own, else ClaimConflict: a status without
    a claim never finishes a run, and never touches a run claimed with an id.

    ``allowed`` (a condition on the dataset's project, see crunch.access.may_process) is
    checked in the same query that locks the row: NotAllowed when it is false.

    Three queries on the usual path: the locked row (with the key's earlier status and
    the caller's right, if asked), the insert and the update. With ``savepoint=False``
    inside the caller's transaction, a key recorded at the same moment by another request
    is not looked up: the IntegrityError spoils that transaction, and the caller retries.
    """
    stage, state = Stage(stage), State(state)
    note = cut_note(note)
    fields = {
        name: value for name, value in (diagnostics or {}).items() if name in DIAGNOSTIC_FIELDS
    }
    try:
        with transaction.atomic(savepoint=savepoint):
            found = lock(dataset, keys=[key] if key else [], allowed=allowed, user=user)
            if found is None:
                raise Dataset.DoesNotExist(f"No dataset {dataset!r}.")
            locked = found.dataset
            if not found.allowed:
                raise NotAllowed(f"You may not report on dataset {locked.slug!r}.")
            if found.seen is not None:
                return Status.objects.select_related("dataset").get(pk=found.seen), False
            if claim_id is None:
                if may_start is not None:
                    may_start(locked)
                claim_id = _legacy_claim(locked, stage=stage, state=state, user=user, fields=fields)
            elif (
                locked.claim_id != claim_id
                or locked.state != DatasetState.RUNNING
                or (user is not None and locked.claim_user_id != getattr(user, "pk", None))
            ):
                raise LeaseExpired(
                    f"Claim {str(claim_id)!r} on dataset {locked.slug!r} is no longer held."
                )
            if results is not None:
                store(locked, results)
            status = Status(
                dataset=locked, stage=stage, state=state, note=note, claim_id=claim_id,
                key=key or None, user=user if getattr(user, "pk", None) else None,
                workflow_sha256=workflow_sha256, image_digest=image_digest, slot=slot,
                **failure_fields(state, failure), **fields,
            )  # fmt: skip
            (status,) = statements.insert_statuses([status])
            move(locked, status)
            statements.advance_dataset(locked)
    except IntegrityError:
        if not savepoint:
            raise
        # The same key posted twice at once: the other request recorded it.
        if key and (existing := recorded(dataset, key=key, user=user)):
            return existing, False
        raise
    if isinstance(dataset, Dataset):
        dataset.refresh_from_db()
    return status, True


def recorded(dataset: Dataset | int | str, *, key: str, user: Any) -> Status | None:
    """The status ``user`` recorded on ``dataset`` with ``key``, if any."""
    on_dataset = {f"dataset__{name}": value for name, value in dataset_lookup(dataset).items()}
    user_pk = getattr(user, "pk", None)
    by = {"user_id": user_pk} if user_pk is not None else {"user__isnull": True}
    return Status.objects.select_related("dataset").filter(key=key, **by, **on_dataset).first()


def dataset_lookup(dataset: Dataset | int | str) -> dict[str, Any]:
    if isinstance(dataset, Dataset):
        return {"pk": dataset.pk}
    if isinstance(dataset, int):
        return {"pk": dataset}
    return {"slug": dataset}


def lock(
    dataset: Dataset | int | str, *, keys: list[str], allowed: Condition | None, user: Any = None
) -> Locked | None:
    """Lock a dataset's row (its project joined) in the caller's transaction; one query
    (crunch.db's ``lock_dataset``).

    It also reads whether ``user`` recorded any of ``keys`` on this dataset (an index
    probe of crunch_status_key) and whether ``allowed`` holds.
    """
    (which,) = dataset_lookup(dataset).values()
    user_pk = getattr(user, "pk", None)
    return statements.lock_dataset(which, keys=keys, user_pk=user_pk, allowed=allowed)


def legacy_holder(user: Any, fields: dict[str, Any]) -> str:
    """How a client that sends no claim id is known: its user and host."""
    username = getattr(user, "get_username", lambda: "anonymous")()
    return f"{username}@{fields.get('hostname') or 'unknown host'}"


def _legacy_claim(
    dataset: Dataset, *, stage: Stage, state: State, user: Any, fields: dict[str, Any]
) -> uuid.UUID:
    holder = legacy_holder(user, fields)
    if dataset.state == DatasetState.RUNNING:
        if not is_legacy_claim(dataset.claim_id):
            # Claimed with an id (crunch.api's claims): only that id reports on the run,
            # whatever holder string the claim was given.
            raise ClaimConflict(
                f"Dataset {dataset.slug!r} is claimed by {dataset.claim_holder!r}; "
                "a status on it must carry its claim id."
            )
        if dataset.claim_holder != holder or dataset.claim_user_id != getattr(user, "pk", None):
            raise ClaimConflict(f"Dataset {dataset.slug!r} is claimed by {dataset.claim_holder!r}.")
        assert dataset.claim_id is not None
        return dataset.claim_id
    if not (stage == Stage.SETUP and state == State.START):
        raise ClaimConflict(
            f"Dataset {dataset.slug!r} is {dataset.state} and not held by {holder!r}; "
            "start a run with Setup Start or claim it first."
        )
    refuse_paused(dataset.project)
    values = claim_values(holder=holder, user=user, now=timezone.now(), lease_seconds=None)
    values["claim_id"] = legacy_claim_id()
    Dataset.objects.filter(pk=dataset.pk).update(**values)
    dataset.refresh_from_db()
    assert dataset.claim_id is not None
    return dataset.claim_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    """Why a run failed, as its Fail says: the reason, its particulars, and the memory
    (bytes) and time limit (seconds) the run had, from which its dataset's needs follow."""

    reason: str = FailReason.UNKNOWN
    detail: str = ""
    memory: int | None = None
    seconds: int | None = None


FAILURE_MAX = 200  # characters of a reason's detail kept


def failure_fields(state: State | int, failure: Failure | None) -> dict[str, Any]:
    """A status's reason columns: a Fail's (``unknown`` when none is given), blank otherwise."""
    if state != State.FAIL:
        return {"reason": "", "reason_detail": "", "memory": None, "seconds": None}
    failure = failure or Failure()
    return {
        "reason": failure.reason or FailReason.UNKNOWN,
        "reason_detail": failure.detail[:FAILURE_MAX],
        "memory": failure.memory, "seconds": failure.seconds,
    }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Report:
    """One status of a run, as a batch carries it."""

    stage: Stage
    state: State
    note: str = ""
    key: str | None = None
    workflow_sha256: str = ""
    image_digest: str = ""
    diagnostics: dict[str, Any] = dataclasses.field(default_factory=dict)
    slot: int | None = None
    age: float = 0.0
    """How many seconds before its call the client made it (a status queued to go with a
    later call): recorded at that time, not when the call arrives."""

    def made(self, dataset: Dataset, now: datetime.datetime) -> datetime.datetime:
        """When the status happened: ``age`` seconds before ``now``, never before its run's
        claim (no client writes a status into another run's time) nor its dataset's last
        sign of life (the status before it: a retried call's stale age cannot reorder the
        history). ``moved`` keeps that floor."""
        at = now - datetime.timedelta(seconds=self.age)
        floors = [time for time in (dataset.claimed, dataset.heartbeat) if time is not None]
        return max([at, *floors])

    @staticmethod
    def moved(dataset: Dataset, status: Status) -> None:
        """After ``move``: the dataset's last sign of life is its status's time, the floor
        of the next status of the same call."""
        dataset.heartbeat = status.created

    failure: Failure | None = None
    """A Fail's reason (None: unknown); ignored on other statuses."""
    results: Mapping[str, Any] | None = None
    """An Upload Success's results (crunch.services.results.store)."""


def record_run(
    *, dataset: int | str, claim_id: uuid.UUID, reports: list[Report], user: Any = None,
    allowed: Condition | None = None,
) -> list[Status] | None:  # fmt: skip
    """Record several statuses of one held claim in one pass: lock, insert them, update.

    None when this fast path does not apply (a key was recorded before: a retried batch;
    the claim is not held; a status after the run ended; results the schema refuses), so
    the caller records each alone and gets each one's answer. Three queries, whatever the
    number of statuses (and a store's, with results).
    """
    keys = [r.key for r in reports if r.key]
    try:
        with transaction.atomic():
            found = lock(dataset, keys=keys, allowed=allowed, user=user)
            locked = found.dataset if found else None
            if (
                found is None or locked is None or found.seen is not None or not found.allowed
                or locked.claim_id != claim_id or locked.state != DatasetState.RUNNING
                or (user is not None and locked.claim_user_id != getattr(user, "pk", None))
            ):  # fmt: skip
                return None
            made = []
            for report in reports:
                if locked.state != DatasetState.RUNNING:
                    raise _Fallback  # a status after the run ended: refused one by one
                if report.results is not None:
                    store(locked, report.results)
                fields = {k: v for k, v in report.diagnostics.items() if k in DIAGNOSTIC_FIELDS}
                note = cut_note(report.note)
                made.append(Status(
                    dataset=locked, stage=report.stage, state=report.state, note=note,
                    claim_id=claim_id, key=report.key or None,
                    created=report.made(locked, timezone.now()),
                    user=user if getattr(user, "pk", None) else None,
                    workflow_sha256=report.workflow_sha256, image_digest=report.image_digest,
                    slot=report.slot, **failure_fields(report.state, report.failure), **fields,
                ))  # fmt: skip
                move(locked, made[-1])
                Report.moved(locked, made[-1])
            made = statements.insert_statuses(made)
            statements.advance_dataset(locked)
    except (_Fallback, IntegrityError, InvalidResults):
        return None
    return made


class _Fallback(Exception):
    """Leave the one-pass batch: its statuses are recorded one by one instead."""


def move(dataset: Dataset, status: Status) -> None:
    """Move the dataset after ``status``: Upload Success completes it, any Fail ends the run
    as the project's retry policy says (``fail``), the others renew the lease."""
    now = timezone.now()
    stage, state = Stage(status.stage), State(status.state)
    dataset.stage = stage
    dataset.heartbeat = now
    if state == State.FAIL:
        fail(dataset, status, now=now)
    elif stage == Stage.UPLOAD and state == State.SUCCESS:
        dataset.state = DatasetState.COMPLETED
        dataset.note = dataset.last_reason = dataset.last_reason_detail = ""
        dataset.needs_memory = dataset.needs_seconds = None
        dataset.finished = now
        for field, value in CLEARED_CLAIM.items():
            setattr(dataset, field, value)
    else:
        dataset.lease_expires = lease_until(now, dataset.lease_seconds)


def fail(dataset: Dataset, status: Status, *, now: datetime.datetime) -> None:
    """End the run of a Fail: pending again or failed, its attempt spent or given back, after
    the delay its reason's rule sets; the memory or time the next run needs raised. The one
    place a Fail moves a dataset (a status alone, a run's batch, a batch of many runs)."""
    project = dataset.project
    outcome = after_fail(
        policy=Policy.of(project.retry_policy), reason=status.reason,
        detail=status.reason_detail, attempts=dataset.attempts,
        max_attempts=project.max_attempts, retry_delay=project.retry_delay, now=now,
    )  # fmt: skip
    dataset.state, dataset.attempts = outcome.state, outcome.attempts
    dataset.not_before = outcome.not_before
    dataset.note = status.note or f"{Stage(status.stage).label} failed."
    dataset.last_reason, dataset.last_reason_detail = status.reason, status.reason_detail
    dataset.needs_memory, dataset.needs_seconds = needs_after(
        reason=status.reason, detail=status.reason_detail, memory=status.memory,
        seconds=status.seconds, needs_memory=dataset.needs_memory,
        needs_seconds=dataset.needs_seconds,
    )  # fmt: skip
    dataset.finished = now
    for field, value in CLEARED_CLAIM.items():
        setattr(dataset, field, value)


ADVANCED_FIELDS = list(statements.ADVANCED)
"""What a status may change on its dataset: saved alone, not the whole row."""
