"""Counted claims: up to ``count`` datasets in one request, for a loop with free slots
(or a single loop's first claim, whose answer says the server takes batches)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from crunch.choices import Stage
from crunch.db import batched
from crunch.db.statements import Condition
from crunch.models import Dataset, Project
from crunch.services.claims import (
    Claim,
    KeyInUse,
    claim_on,
    claim_values,
    reclaim_due,
    reclaim_expired,
    record_starts,
)

MAX_COUNT = 64
"""The most datasets one claim request may ask for (``count``)."""


def claim_many(  # noqa: PLR0913 (keyword-only: claim_next's and the count's)
    *,
    count: int,
    holder: str,
    project: Project | str | None = None,
    allowed: Condition | None = None,
    user: Any = None,
    lease_seconds: int | None = None,
    key: str | None = None,
    start: dict[str, Any] | None = None,
    slots: list[int] | None = None,
    savepoint: bool = True,
    memory: int | None = None,
    seconds: int | None = None,
) -> list[Claim]:
    """Claim up to ``count`` ready datasets at once, in queue order; [] when none is left.

    As ``claim_next`` (same arguments), for a loop with several free slots: each claim has
    its own id and lease, and the i-th (from 0) the key ``f"{key}:{i}"``, so a request
    retried with the same ``key`` gets the claims it made (those still running) and makes
    none. With ``start`` every claim's Setup Start is recorded, the i-th with the slot
    ``slots[i]`` if given. A constant number of statements whatever ``count``: the claims
    (one UPDATE ... RETURNING), their projects, and their Setup Starts (one INSERT).
    """
    if reclaim_due():
        reclaim_expired()
    if (
        key
        and getattr(user, "pk", None) is None
        and (earlier := _claims_with_key(key, user, count))
    ):
        return earlier  # no user: no unique constraint to find the retry (NULLs differ)
    while True:
        now = timezone.now()
        values = claim_values(holder=holder, user=user, now=now, lease_seconds=lease_seconds)
        if start is not None:
            values["stage"] = Stage.SETUP
        wanted = [(uuid.uuid4(), f"{key}:{i}" if key else None) for i in range(count)]
        try:
            with transaction.atomic(savepoint=savepoint):
                taken = batched.claim_many(
                    values, claims=wanted, project=project, allowed=allowed, now=now,
                    memory=memory, seconds=seconds,
                )  # fmt: skip
                if taken:
                    owners = batched.projects([dataset.project_id for dataset in taken])
                    for dataset in taken:
                        dataset.project = owners[dataset.project_id]
                    made = [claim_on(dataset) for dataset in taken]
                    return made if start is None else record_starts(made, start, user, slots)
        except IntegrityError:
            if not savepoint:
                raise
            # A key already on a running claim: this request was sent before.
            if key and (earlier := _claims_with_key(key, user, count)):
                return earlier
            raise KeyInUse(key or "") from None
        if key and (earlier := _claims_with_key(key, user, count)):
            return earlier  # a retry after the queue's last datasets went to this very request
        if reclaim_expired():
            continue  # leases ran out: those datasets are pending again
        return []


def _claims_with_key(key: str, user: Any, count: int) -> list[Claim]:
    """The running claims ``user`` (None: no user) made with ``key`` and ``count``, in order."""
    keys = [f"{key}:{i}" for i in range(count)]
    user_pk = getattr(user, "pk", None)
    running = Dataset.objects.running().filter(claim_key__in=keys, claim_user_id=user_pk)
    found = sorted(running.select_related("project"), key=lambda d: keys.index(d.claim_key or ""))
    # Those taken with their Setup Start have a stage: the retry must not post it again.
    return [dataclasses.replace(claim_on(d), started=d.stage is not None) for d in found]
