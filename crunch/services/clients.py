"""The loops that hold claims and their slots: recorded as they renew, shown on the pages.

A loop (``crunch loop --slots N``) describes itself with its batch renewal; its busy slots
are the running datasets it holds, counted when shown, so nothing stored goes stale but
``last_seen``.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from crunch.conf import crunch_settings
from crunch.models import Client, Dataset, Project


@dataclass(frozen=True, kw_only=True)
class ClientReport:
    """What a loop says of itself."""

    holder: str
    slots: int = 1
    hostname: str = ""
    slurm_job_id: str = ""
    slurm_array_task_id: str = ""


def seen(user: Any, report: ClientReport, now: datetime.datetime | None = None) -> None:
    """Record that ``user``'s loop ``report.holder`` is alive with its slots: one upsert."""
    if getattr(user, "pk", None) is None or not report.holder:
        return
    row = Client(user=user, last_seen=now or timezone.now(), **asdict(report))
    row.holder = row.holder[:255]
    Client.objects.bulk_create(
        [row], update_conflicts=True, unique_fields=["user", "holder"],
        update_fields=["slots", "hostname", "slurm_job_id", "slurm_array_task_id", "last_seen"],
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ClientSlots:
    """A live loop working on a project, and how many of its slots are busy."""

    holder: str
    hostname: str
    slurm_job_id: str
    slurm_array_task_id: str
    slots: int
    busy: int

    @property
    def free(self) -> int:
        return max(self.slots - self.busy, 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "free": self.free}


def live_slots(project: Project, now: datetime.datetime | None = None) -> list[ClientSlots]:
    """The loops seen within a lease that hold a running dataset of ``project``, with their
    busy slots: the running datasets they hold, of any project (one query)."""
    now = now or timezone.now()
    held = Dataset.objects.running().filter(
        lease_expires__gte=now, claim_user_id=OuterRef("user_id"), claim_holder=OuterRef("holder")
    )
    since = now - datetime.timedelta(seconds=crunch_settings.LEASE_SECONDS)
    live = Client.objects.filter(last_seen__gte=since).filter(Exists(held.filter(project=project)))
    busy = held.order_by().values("claim_user_id").annotate(n=Count("id")).values("n")[:1]
    clients = live.annotate(busy=Coalesce(Subquery(busy, output_field=IntegerField()), 0))
    return [
        ClientSlots(
            holder=c.holder, hostname=c.hostname, slurm_job_id=c.slurm_job_id,
            slurm_array_task_id=c.slurm_array_task_id, slots=c.slots, busy=c.busy,
        )
        for c in clients.order_by("hostname", "holder")
    ]  # fmt: skip
