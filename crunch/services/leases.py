"""Leases: a held claim is renewed, released, or swept back to the queue once it expires.

A claim (crunch.services.claims) makes a dataset running with a lease; what follows here
keeps that lease or ends it. Nothing here hands a dataset out.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from crunch.choices import DatasetState, FailReason, State
from crunch.conf import crunch_settings
from crunch.db import batched
from crunch.db.statements import Condition
from crunch.exceptions import InvalidTransition, LeaseExpired
from crunch.models import Dataset, DatasetQuerySet, Status
from crunch.services.notes import cut_note
from crunch.services.retry_policy import Policy, after_fail

logger = logging.getLogger(__name__)


def lease_until(now: datetime.datetime, lease_seconds: int | None = None) -> datetime.datetime:
    return now + datetime.timedelta(seconds=lease_seconds or crunch_settings.LEASE_SECONDS)


RECLAIM_EVERY = 5.0  # seconds between sweeps of expired leases while the queue is not empty
_last_reclaim = [0.0]


def reclaim_due() -> bool:
    """Whether this process last swept expired leases more than RECLAIM_EVERY ago."""
    return time.monotonic() - _last_reclaim[0] >= RECLAIM_EVERY


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


MAX_RENEWED = 512
"""The most claims one batch renewal may name."""


@dataclass(frozen=True)
class Renewal:
    """A batch renewal's answer: the leases renewed, and the claims no longer held."""

    renewed: list[tuple[uuid.UUID, datetime.datetime]]
    lost: list[uuid.UUID]


def renew_leases(
    claim_ids: list[uuid.UUID],
    *,
    user: Any,
    allowed: Condition | None = None,
    lease_seconds: int | None = None,
) -> Renewal:
    """Extend every lease of ``claim_ids`` that ``user`` holds on a project ``allowed`` lets
    them process; the others are lost, whatever the reason (another's, released, expired,
    unknown): one answer for each, so that nothing is told of claims not one's own.

    One UPDATE ... RETURNING with ``lease_seconds``; without it each lease by its own
    length, read first (then one UPDATE per distinct length, usually one).
    """
    now = timezone.now()
    wanted = list(dict.fromkeys(claim_ids))
    user_pk = getattr(user, "pk", None)
    groups: dict[datetime.datetime, list[uuid.UUID]] = defaultdict(list)
    if lease_seconds is not None:
        groups[lease_until(now, lease_seconds)] = wanted
    elif wanted and user_pk is not None:
        lengths = dict(held_by_any(wanted, user_pk).values_list("claim_id", "lease_seconds"))
        for claim_id in wanted:
            if claim_id in lengths:
                groups[lease_until(now, lengths[claim_id])].append(claim_id)
    renewed: dict[uuid.UUID, datetime.datetime] = {}
    for expires, ids in groups.items():
        done = batched.renew_claims(
            ids, user_pk=user_pk, allowed=allowed, now=now, lease_expires=expires
        )
        renewed.update(dict.fromkeys(done, expires))
    return Renewal(
        renewed=[(c, renewed[c]) for c in wanted if c in renewed],
        lost=[c for c in wanted if c not in renewed],
    )


def held_by_any(claim_ids: list[uuid.UUID], user_pk: Any) -> DatasetQuerySet:
    return Dataset.objects.running().filter(claim_id__in=claim_ids, claim_user_id=user_pk)


def release(
    claim_id: uuid.UUID, *, user: Any = None, note: str = "",
    reason: str = FailReason.CANCELLED, detail: str = "",
) -> Dataset:  # fmt: skip
    """Give a claimed dataset back to the queue at once, not counting the attempt.

    Used when a client is stopped (SIGTERM at wall time): the dataset was not at fault,
    whatever the ``reason`` (cancelled, or time-limit with detail wall-time when the
    client's deadline stopped it), which becomes the dataset's last reason. A note is also
    recorded as a Fail status of the current stage, with the reason, so the history shows
    why the run ended.
    """
    with transaction.atomic():
        dataset = held_by(claim_id, user).select_for_update().first()
        if dataset is None:
            raise LeaseExpired(f"Claim {str(claim_id)!r} is no longer held.")
        note = cut_note(note)
        if note:
            Status.objects.create(
                dataset=dataset,
                stage=dataset.stage or 1,
                state=State.FAIL,
                note=note,
                claim_id=claim_id,
                reason=reason,
                reason_detail=detail[:200],
            )
            dataset.note = note
        dataset.last_reason, dataset.last_reason_detail = reason, detail[:200]
        dataset.state = DatasetState.PENDING
        dataset.attempts = max(dataset.attempts - 1, 0)
        _clear_claim(dataset)
        dataset.save()
    return dataset


def release_dataset(dataset: Dataset, *, user: Any) -> Dataset:
    """Return a running dataset to pending now, on a maintainer's word (``crunch release``).

    For a client killed or stuck: its claim is dropped (the attempt not counted) and the
    history notes who released it. InvalidTransition when the dataset is not running.
    """
    if dataset.state != DatasetState.RUNNING or dataset.claim_id is None:
        raise _not_running(dataset)
    name = user.get_username() if getattr(user, "pk", None) else "an anonymous user"
    try:
        return release(dataset.claim_id, note=f"Released by {name}.")
    except LeaseExpired:  # it finished, failed or was released meanwhile
        dataset.refresh_from_db(fields=["state"])
        raise _not_running(dataset) from None


def _not_running(dataset: Dataset) -> InvalidTransition:
    return InvalidTransition(
        f"Dataset {dataset.slug!r} is {dataset.state}, not running: there is no claim to release."
    )


def reclaim_expired(now: datetime.datetime | None = None) -> int:
    """Return datasets whose lease expired to pending (or failed), as the project's retry
    policy says of ``lost-lease`` (by default: at once, the attempt given back).

    A Fail status with the reason records why, so the history shows it.
    """
    _last_reclaim[0] = time.monotonic()
    now = now or timezone.now()
    expired = list(
        Dataset.objects.expired(now).values_list(
            "pk", "claim_id", "claim_holder", "stage", "attempts", "project__max_attempts",
            "project__retry_delay", "project__retry_policy",
        )
    )  # fmt: skip
    count = 0
    lost = FailReason.LOST_LEASE
    for pk, claim_id, holder, stage, attempts, max_attempts, delay, policy in expired:
        note = f"Lease expired: {holder or 'the client'} stopped renewing its claim."
        outcome = after_fail(
            policy=Policy.of(policy), reason=lost, detail="", attempts=attempts,
            max_attempts=max_attempts, retry_delay=delay, now=now,
        )  # fmt: skip
        with transaction.atomic():
            changed = Dataset.objects.filter(
                pk=pk, claim_id=claim_id, state=DatasetState.RUNNING, lease_expires__lt=now
            ).update(
                state=outcome.state, attempts=outcome.attempts, not_before=outcome.not_before,
                note=note, last_reason=lost, last_reason_detail="", finished=now,
                **CLEARED_CLAIM,
            )  # fmt: skip
            if changed:
                Status.objects.create(
                    dataset_id=pk, stage=stage or 1, state=State.FAIL, note=note,
                    claim_id=claim_id, reason=lost,
                )  # fmt: skip
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
