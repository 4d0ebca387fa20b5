"""Atomic claims: one dataset to one client at a time, with a lease that must be renewed.

Renewing, releasing and sweeping expired leases live in crunch.services.leases; they are
importable from here too, as before.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import F
from django.utils import timezone

from crunch.choices import DatasetState, Stage, State
from crunch.db import statements
from crunch.db.statements import Condition
from crunch.exceptions import ClaimConflict, LeaseExpired, ProjectPaused
from crunch.models import Dataset, Project, Status
from crunch.services.leases import (  # the lease's life, once claimed; re-exported
    CLEARED_CLAIM,
    held_by,
    lease_until,
    reclaim_due,
    reclaim_expired,
    release,
    release_dataset,
    renew_lease,
    renew_leases,
)

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

    @property
    def attempt(self) -> int:
        """Which attempt of the dataset this run is (1, 2, ...): CRUNCH_ATTEMPT."""
        return self.dataset.attempts

    @property
    def last_reason(self) -> str:
        """The reason its previous run failed ("" for none): CRUNCH_LAST_REASON."""
        return self.dataset.last_reason

    @property
    def last_reason_detail(self) -> str:
        return self.dataset.last_reason_detail


LEGACY_VERSION = 8
"""The UUID version of the claim ids of the 0.1 path (RFC 9562's version for ids of one's
own design); every claim made with an id is a random version 4."""


def legacy_claim_id() -> uuid.UUID:
    """A random claim id for a run a django-crunch 0.1 client started with its Setup Start.

    Its version tells such a claim from one a client asked for: statuses without a claim
    id may report on the first kind only.
    """
    return uuid.UUID(int=uuid.uuid4().int & ~(0xF << 76) | LEGACY_VERSION << 76)


def is_legacy_claim(claim_id: uuid.UUID | None) -> bool:
    return claim_id is not None and claim_id.version == LEGACY_VERSION


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


@dataclass(frozen=True)
class Queue:
    """The ready datasets a claim picks from: of one project, of those the caller may process."""

    project: Project | str | None = None
    allowed: Condition | None = None
    memory: int | None = None
    """Bytes of memory the claim announces: datasets that need more are left (None: any
    dataset that needs nothing)."""
    seconds: int | None = None
    """Seconds the claim announces for one dataset, alike."""

    def take(self, values: dict[str, Any]) -> Dataset | None:
        """Claim the next ready dataset in one statement; the claimed row, None if none.

        ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING``
        (crunch.db's ``claim_next``): PostgreSQL skips the rows other claims are taking,
        SQLite runs the statement under its write lock. No two claims get one row, and no
        transaction or retry is needed.
        """
        return statements.claim_next(
            values, project=self.project, allowed=self.allowed, now=timezone.now(),
            memory=self.memory, seconds=self.seconds,
        )  # fmt: skip


def claim_next(  # noqa: PLR0913 (keyword-only: the parts of one claim request)
    *,
    holder: str,
    project: Project | str | None = None,
    allowed: Condition | None = None,
    user: Any = None,
    lease_seconds: int | None = None,
    key: str | None = None,
    start: dict[str, Any] | None = None,
    savepoint: bool = True,
    memory: int | None = None,
    seconds: int | None = None,
) -> Claim | None:
    """Atomically claim the highest-priority, oldest ready dataset; None when none is left.

    ``project`` (a Project or its slug) narrows the queue to one project, ``allowed`` to
    the projects the caller may process (crunch.access.may_process). A request retried
    with the same ``key`` (its answer was lost) gets the same claim back, not a second one;
    keys are the user's own (crunch_claim_key): another user's is no retry of theirs.
    With ``start`` (the diagnostics of a status) the run's Setup Start is recorded too.
    ``memory`` (bytes) and ``seconds`` are what the client can give one dataset: a dataset
    that needs more (crunch.services.retry_policy.needs_after) is left for another claim.

    One transaction (a savepoint within the caller's) of two statements, hand-written
    (see crunch.db): take the next row, read its project; a third
    records the Setup Start, so no claim is left started without its status. With
    ``savepoint=False`` inside the caller's transaction, a key in use is not looked up:
    the IntegrityError spoils that transaction, and the caller retries without it.
    Expired leases are returned to the queue every few seconds and whenever it looks
    empty, not on every claim.
    """
    if reclaim_due():
        reclaim_expired()
    if key and getattr(user, "pk", None) is None and (earlier := _claim_with_key(key, user)):
        return earlier  # no user: no unique constraint to find the retry (NULLs differ)
    queue = Queue(project=project, allowed=allowed, memory=memory, seconds=seconds)
    while True:
        values = claim_values(
            holder=holder, user=user, now=timezone.now(), lease_seconds=lease_seconds, key=key
        )
        if start is not None:
            values["stage"] = Stage.SETUP
        try:
            with transaction.atomic(savepoint=savepoint):
                dataset = queue.take(values)
                if dataset is not None:
                    dataset.project = statements.project(dataset.project_id)
                    claim = claim_on(dataset)
                    return claim if start is None else record_starts([claim], start, user)[0]
        except IntegrityError:
            if not savepoint:
                raise
            # The key is already on a running claim: this request was sent before.
            if key and (earlier := _claim_with_key(key, user)):
                return earlier
            raise KeyInUse(key or "") from None
        if key and (earlier := _claim_with_key(key, user)):
            return earlier  # a retry after the queue's last dataset went to this very request
        if reclaim_expired():
            continue  # leases ran out: those datasets are pending again
        return None


def record_starts(
    made: list[Claim], diagnostics: dict[str, Any], user: Any, slots: list[int] | None = None
) -> list[Claim]:
    """Record the Setup Start of every run just claimed (the status its client would post
    next), the i-th with the slot ``slots[i]`` if given, in one statement."""
    statements.insert_statuses([Status(
        dataset=claim.dataset, stage=Stage.SETUP, state=State.START, claim_id=claim.id,
        user=user if getattr(user, "pk", None) else None, created=started_at(claim),
        slot=slots[n] if slots and n < len(slots) else None, **diagnostics,
    ) for n, claim in enumerate(made)])  # fmt: skip
    return [dataclasses.replace(claim, started=True) for claim in made]


def started_at(claim: Claim) -> datetime.datetime:
    """A Setup Start recorded with its claim happened at the claim: the earliest time any
    status of the run may have (a queued status's age is held to it, statuses.Report.made),
    so no later status of the run sorts before it."""
    return claim.dataset.claimed or timezone.now()


def refuse_paused(project: Project) -> None:
    """Raise ProjectPaused when ``project`` is paused: claims of any kind are refused."""
    if project.paused:
        raise ProjectPaused(
            f"Project {project.slug!r} is paused: it hands out no dataset until a maintainer "
            f"runs 'crunch project resume {project.slug}'."
        )


class KeyInUse(ClaimConflict):
    """The claim key is already held by another claim."""

    def __init__(self, key: str) -> None:
        super().__init__(f"The key {key[:64]!r} belongs to another claim; send a new one.")


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

    Raises ClaimConflict when another client holds it, ProjectPaused when its project is
    paused (``dataset.project`` is read as loaded: no query).
    """
    refuse_paused(dataset.project)
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


def _claim_of(pk: int) -> Claim:
    """The claim on row ``pk``: the dataset read back with its project, in one query."""
    return claim_on(statements.dataset_with_project(pk))


def claim_on(dataset: Dataset) -> Claim:
    """The claim held on ``dataset``, a row just claimed."""
    assert dataset.claim_id is not None and dataset.lease_expires is not None
    return Claim(
        id=dataset.claim_id,
        dataset=dataset,
        holder=dataset.claim_holder,
        lease_expires=dataset.lease_expires,
    )


def _claim_with_key(key: str, user: Any) -> Claim | None:
    """The running claim ``user`` (None: no user) asked for with ``key``."""
    running = Dataset.objects.running().filter(claim_key=key)
    user_pk = getattr(user, "pk", None)
    running = (
        running.filter(claim_user_id=user_pk)
        if user_pk is not None
        else running.filter(claim_user=None)
    )
    pk = running.values_list("pk", flat=True).first()
    if pk is None:
        return None
    claim = _claim_of(pk)
    # A claim taken with its Setup Start has a stage: the retry must not post it again.
    return dataclasses.replace(claim, started=claim.dataset.stage is not None)


def _holder_of(pk: int) -> str:
    holder = Dataset.objects.filter(pk=pk).values_list("claim_holder", flat=True).first()
    return holder or "another client"


__all__ = [
    "CLEARED_CLAIM",
    "Claim",
    "KeyInUse",
    "LeaseExpired",
    "Queue",
    "claim_dataset",
    "claim_next",
    "claim_on",
    "claim_values",
    "held_by",
    "is_legacy_claim",
    "lease_until",
    "legacy_claim_id",
    "reclaim_due",
    "reclaim_expired",
    "record_starts",
    "refuse_paused",
    "release",
    "release_dataset",
    "renew_lease",
    "renew_leases",
]  # fmt: skip
