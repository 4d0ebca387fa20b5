"""Atomic claims: one dataset to one client at a time, with a lease that must be renewed."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from crunch.choices import DatasetState, Stage, State
from crunch.conf import crunch_settings
from crunch.exceptions import ClaimConflict, LeaseExpired
from crunch.models import Dataset, DatasetQuerySet, Project, Status
from crunch.services import statements

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A client's hold on a dataset until ``lease_expires``."""

    id: uuid.UUID
    dataset: Dataset
    holder: str
    lease_expires: datetime.datetime
    started: bool = False
    """Whether the run's Setup Start was recorded with the claim."""


def supports_skip_locked() -> bool:
    """Whether the database can lock the next pending row while skipping ones others hold.

    SQLite cannot; there a conditional UPDATE takes its place (see ``take_if_pending``).
    """
    connection = connections[router.db_for_write(Dataset)]
    return bool(connection.features.has_select_for_update_skip_locked)


def lease_until(now: datetime.datetime, lease_seconds: int | None = None) -> datetime.datetime:
    return now + datetime.timedelta(seconds=lease_seconds or crunch_settings.LEASE_SECONDS)


def claim_values(
    *,
    holder: str,
    user: Any,
    now: datetime.datetime,
    lease_seconds: int | None,
    key: str | None = None,
) -> dict[str, Any]:
    """The column values that turn a dataset into a running, claimed one."""
    return {
        "claim_key": key or None,
        "lease_seconds": lease_seconds,
        "state": DatasetState.RUNNING,
        "stage": None,
        "claim_id": uuid.uuid4(),
        "claim_holder": holder[:255],
        "claim_user": user if getattr(user, "pk", None) else None,
        "claimed": now,
        "heartbeat": now,
        "lease_expires": lease_until(now, lease_seconds),
        "attempts": F("attempts") + 1,
        "not_before": None,
    }


def take_if_pending(pk: int, values: dict[str, Any]) -> bool:
    """Claim row ``pk`` only if it is still pending: ``UPDATE ... WHERE state='pending'``.

    The portable form of an atomic claim, for databases without SKIP LOCKED.
    """
    return _take(pk, values, only_pending=True)


def _take(pk: int, values: dict[str, Any], *, only_pending: bool = False) -> bool:
    """Write the claim ``values`` to row ``pk`` (if still pending); whether it changed."""
    values = dict(values)
    increments = ["attempts"] if values.pop("attempts", None) is not None else []
    where, params = ("", []) if not only_pending else (
        f" AND {statements.column(Dataset, 'state')} = %s", [DatasetState.PENDING.value]
    )  # fmt: skip
    changed = statements.update(
        Dataset, pk, values, increments=increments, where=where, params=params
    )
    return changed == 1


@dataclass(frozen=True)
class Queue:
    """The ready datasets a claim picks from: of one project, of those the caller may process."""

    project: Project | str | None = None
    allowed: RawSQL | None = None

    def first(self, *, lock: bool = False) -> int | None:
        """The id of the next dataset to hand out (locked, skipping locked rows, if ``lock``)."""
        state, not_before = (statements.column(Dataset, n) for n in ("state", "not_before"))
        now = statements.prepared(Dataset, "not_before", timezone.now())
        conditions = [f"{state} = %s", f"({not_before} IS NULL OR {not_before} <= %s)"]
        params: list[Any] = [DatasetState.PENDING.value, now]
        project_id = statements.column(Dataset, "project")
        if isinstance(self.project, Project):
            conditions.append(f"{project_id} = %s")
            params.append(self.project.pk)
        elif self.project is not None:
            conditions.append(
                f"{project_id} = (SELECT {statements.column(Project, 'id')} FROM "
                f"{statements.table(Project)} WHERE {statements.column(Project, 'slug')} = %s)"
            )
            params.append(self.project)
        if self.allowed is not None:
            conditions.append(self.allowed.sql)
            params.extend(self.allowed.params)
        order = f"{statements.column(Dataset, 'priority')} DESC, {statements.column(Dataset, 'id')}"
        lock_clause = statements.lock_clause(Dataset, skip_locked=True) if lock else ""
        sql = (
            f"SELECT {statements.column(Dataset, 'id')} FROM {statements.table(Dataset)} "
            f"WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT 1{lock_clause}"
        )
        rows = statements.fetch(sql, params, Dataset)
        return int(rows[0][0]) if rows else None


def claim_next(
    *,
    holder: str,
    project: Project | str | None = None,
    allowed: RawSQL | None = None,
    user: Any = None,
    lease_seconds: int | None = None,
    key: str | None = None,
    start: dict[str, Any] | None = None,
) -> Claim | None:
    """Atomically claim the highest-priority, oldest ready dataset; None when none is left.

    ``project`` (a Project or its slug) narrows the queue to one project, ``allowed`` to
    the projects the caller may process (crunch.access.may_process). A request retried with the same
    ``key`` (its answer was lost) gets the same claim back instead of a second dataset.
    With ``start`` (the diagnostics of a status) the run's Setup Start is recorded too.

    Three queries (hand-written, see crunch.services.statements): find and lock the next
    row, take it, read it back with its project; a fourth records the Setup Start.
    Expired leases are returned to the queue every few seconds and whenever it looks
    empty, not on every claim.
    """
    if reclaim_due():
        reclaim_expired()
    queue = Queue(project=project, allowed=allowed)
    while True:  # a lost race means another client took a row: the queue only shrinks
        values = claim_values(
            holder=holder, user=user, now=timezone.now(), lease_seconds=lease_seconds, key=key
        )
        if start is not None:
            values["stage"] = Stage.SETUP
        try:
            pk = _take_next(queue, values)
        except IntegrityError:
            # The key is already on a running claim: this request was sent before.
            if key and (earlier := _claim_with_key(key, user)):
                return earlier
            raise KeyInUse(key or "") from None
        if pk is None:
            if reclaim_expired():
                continue  # leases ran out: those datasets are pending again
            return None
        if pk is not LOST_RACE:
            claim = _claim_of(pk)
            return claim if start is None else _started(claim, start, user)


def _started(claim: Claim, diagnostics: dict[str, Any], user: Any) -> Claim:
    """Record the Setup Start of a run just claimed: the status its client would post next."""
    statements.insert([Status(
        dataset=claim.dataset, stage=Stage.SETUP, state=State.START, claim_id=claim.id,
        user=user if getattr(user, "pk", None) else None,
        **diagnostics,
    )])  # fmt: skip
    return dataclasses.replace(claim, started=True)


class KeyInUse(ClaimConflict):
    """The claim key is already held by another claim."""

    def __init__(self, key: str) -> None:
        super().__init__(f"The key {key[:64]!r} belongs to another claim; send a new one.")


LOST_RACE: Any = object()
RECLAIM_EVERY = 5.0  # seconds between sweeps of expired leases while the queue is not empty
_last_reclaim = [0.0]


def reclaim_due() -> bool:
    """Whether this process last swept expired leases more than RECLAIM_EVERY ago."""
    return time.monotonic() - _last_reclaim[0] >= RECLAIM_EVERY


def _take_next(queue: Queue, values: dict[str, Any]) -> Any:
    """Claim the queue's first row: its pk, None when empty, LOST_RACE to try again."""
    if supports_skip_locked():
        with transaction.atomic():
            # All pending rows we look at stay locked until commit: keep this short.
            pk = queue.first(lock=True)
            if pk is not None:
                _take(pk, values)
            return pk
    # No transaction around the two statements: the UPDATE alone decides who wins, and
    # SQLite waits for its write lock instead of failing a read-to-write upgrade.
    pk = queue.first()
    if pk is None:
        return None
    with in_savepoint_if_nested():
        return pk if take_if_pending(pk, values) else LOST_RACE


def in_savepoint_if_nested() -> AbstractContextManager[Any]:
    """A savepoint when the caller holds a transaction, so a refused write spares it."""
    connection = connections[router.db_for_write(Dataset)]
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def claim_dataset(
    dataset: Dataset,
    *,
    holder: str,
    user: Any = None,
    lease_seconds: int | None = None,
    key: str | None = None,
) -> Claim:
    """Claim one named dataset. Completed or failed ones are taken for a new run too.

    Raises ClaimConflict when another client holds it.
    """
    if key and (earlier := _claim_with_key(key, user)) and earlier.dataset.pk == dataset.pk:
        return earlier
    reclaim_expired()
    values = claim_values(
        holder=holder, user=user, now=timezone.now(), lease_seconds=lease_seconds, key=key
    )
    free = Dataset.objects.filter(pk=dataset.pk).exclude(state=DatasetState.RUNNING)
    try:
        with in_savepoint_if_nested():
            taken = free.update(**values)
    except IntegrityError:  # the key names another running claim
        raise KeyInUse(key or "") from None
    if taken != 1:
        raise ClaimConflict(f"Dataset {dataset.slug!r} is claimed by {_holder_of(dataset.pk)!r}.")
    return _claim_of(dataset.pk)


def held_by(claim_id: uuid.UUID, user: Any) -> DatasetQuerySet:
    """The running dataset of this claim, if ``user`` holds it (any user when None).

    A claim id alone is not enough: it must come from the user that claimed.
    """
    held = Dataset.objects.filter(claim_id=claim_id, state=DatasetState.RUNNING)
    return held if user is None else held.filter(claim_user_id=getattr(user, "pk", None))


def renew_lease(
    claim_id: uuid.UUID, *, user: Any = None, lease_seconds: int | None = None
) -> datetime.datetime:
    """Extend a held claim's lease (by its own length unless given); raise LeaseExpired if gone."""
    now = timezone.now()
    held = held_by(claim_id, user)
    if lease_seconds is None:
        lease_seconds = held.values_list("lease_seconds", flat=True).first()
    expires = lease_until(now, lease_seconds)
    if held.update(heartbeat=now, lease_expires=expires) != 1:
        raise LeaseExpired(f"Claim {str(claim_id)!r} is no longer held.")
    return expires


def release(claim_id: uuid.UUID, *, user: Any = None, note: str = "") -> Dataset:
    """Give a claimed dataset back to the queue at once, not counting the attempt.

    Used when a client is stopped (SIGTERM at wall time): the dataset was not at fault.
    A note is also recorded as a Fail status of the current stage, so the history shows
    why the run ended.
    """
    with transaction.atomic():
        dataset = held_by(claim_id, user).select_for_update().first()
        if dataset is None:
            raise LeaseExpired(f"Claim {str(claim_id)!r} is no longer held.")
        if note:
            Status.objects.create(
                dataset=dataset,
                stage=dataset.stage or 1,
                state=State.FAIL,
                note=note,
                claim_id=claim_id,
            )
            dataset.note = note
        dataset.state = DatasetState.PENDING
        dataset.attempts = max(dataset.attempts - 1, 0)
        _clear_claim(dataset)
        dataset.save()
    return dataset


def reclaim_expired(now: datetime.datetime | None = None) -> int:
    """Return datasets whose lease expired to pending (or failed when out of attempts).

    The attempt stays counted and a Fail status records why, so the history shows it.
    """
    _last_reclaim[0] = time.monotonic()
    now = now or timezone.now()
    expired = list(
        Dataset.objects.expired(now).values_list(
            "pk", "claim_id", "claim_holder", "stage", "attempts", "project__max_attempts"
        )
    )
    count = 0
    for pk, claim_id, holder, stage, attempts, max_attempts in expired:
        note = f"Lease expired: {holder or 'the client'} stopped renewing its claim."
        state = DatasetState.PENDING if attempts < max_attempts else DatasetState.FAILED
        with transaction.atomic():
            changed = Dataset.objects.filter(
                pk=pk, claim_id=claim_id, state=DatasetState.RUNNING, lease_expires__lt=now
            ).update(state=state, note=note, finished=now, **CLEARED_CLAIM)
            if changed:
                Status.objects.create(
                    dataset_id=pk, stage=stage or 1, state=State.FAIL, note=note, claim_id=claim_id
                )
                count += 1
                logger.info("Reclaimed dataset pk=%s from holder=%s", pk, holder)
    return count


CLEARED_CLAIM: dict[str, Any] = {
    "claim_id": None,
    "claim_key": None,
    "lease_seconds": None,
    "claim_holder": "",
    "claim_user": None,
    "claimed": None,
    "lease_expires": None,
}


def _clear_claim(dataset: Dataset) -> None:
    for field, value in CLEARED_CLAIM.items():
        setattr(dataset, field, value)


def _claim_of(pk: int) -> Claim:
    """The claim on row ``pk``: the dataset read back with its project, in one query."""
    where = f"{statements.column(Dataset, 'id')} = %s"
    ((dataset, _),) = statements.select_with(Dataset, "project", where=where, params=[pk])
    assert dataset.claim_id is not None and dataset.lease_expires is not None
    return Claim(
        id=dataset.claim_id,
        dataset=dataset,
        holder=dataset.claim_holder,
        lease_expires=dataset.lease_expires,
    )


def _claim_with_key(key: str, user: Any) -> Claim | None:
    running = Dataset.objects.running().filter(claim_key=key)
    if user is not None:
        running = running.filter(claim_user_id=getattr(user, "pk", None))
    pk = running.values_list("pk", flat=True).first()
    if pk is None:
        return None
    claim = _claim_of(pk)
    # A claim taken with its Setup Start has a stage: the retry must not post it again.
    return dataclasses.replace(claim, started=claim.dataset.stage is not None)


def _holder_of(pk: int) -> str:
    holder = Dataset.objects.filter(pk=pk).values_list("claim_holder", flat=True).first()
    return holder or "another client"
