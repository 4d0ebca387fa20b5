"""A project at a glance for the terminal: ``crunch status`` asks for this in one call."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from crunch.models import Dataset, Project, Status
from crunch.services.clients import live_slots
from crunch.services.pages import failure_groups
from crunch.services.stats import project_stats

FAILURES_SHOWN = 5  # failure groups listed


def live_clients(project: Project) -> dict[str, int]:
    """Running datasets with an unexpired lease, counted by Slurm job (or "no job")."""
    last_job = (
        Status.objects.filter(dataset=OuterRef("pk"))
        .order_by("-created", "-id")
        .values("slurm_job_id")[:1]
    )
    jobs = (
        Dataset.objects.running()
        .filter(project=project, lease_expires__gte=timezone.now())
        .annotate(job=Subquery(last_job))
        .values_list("job", flat=True)
    )
    return dict(Counter(job or "" for job in jobs))


def project_overview(project: Project) -> dict[str, Any]:
    """Counts, throughput, time to finish, live clients by job, the slots of the live loops
    (busy and free) and the top failure groups."""
    clients = live_clients(project)
    return {
        "project": project.slug,
        **project_stats(project).as_dict(),
        "live_clients": sum(clients.values()),
        "clients_by_job": clients,
        "slots": [client.as_dict() for client in live_slots(project)],
        "failures": [
            {
                "reason": group.reason,
                "count": group.count,
                "note": group.headline,
                "examples": [d.slug for d in group.examples],
            }
            for group in failure_groups(project, limit=FAILURES_SHOWN)
        ],
        "needs": pending_needs(project),
    }


def pending_needs(project: Project) -> list[dict[str, Any]]:
    """The pending datasets that only a claim announcing more memory or time gets, counted
    by reason and by what they need, largest group first; one grouped query.

    What ``crunch submit --mem-retry`` sizes its next tasks to.
    """
    needy = (
        Dataset.objects.pending()
        .filter(project=project)
        .filter(Q(needs_memory__isnull=False) | Q(needs_seconds__isnull=False))
    )
    rows = (
        needy.order_by().values("last_reason", "needs_memory", "needs_seconds")
        .annotate(count=Count("id")).order_by("-count", "last_reason", "needs_memory")
    )  # fmt: skip
    return [
        {"reason": row["last_reason"], "memory": row["needs_memory"],
         "seconds": row["needs_seconds"], "count": row["count"]}
        for row in rows
    ]  # fmt: skip
