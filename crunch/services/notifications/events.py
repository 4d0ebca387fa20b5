"""Finding the events a project's notifications fire on, away from the clients' requests.

``scan(now)`` looks at each project with an active notification and queues a delivery per
notification and event: the project finished, datasets failed for good, failures spiking.
The project's ``Watch`` row remembers what was reported; it is locked while a notifier
scans (skipped by another notifier on PostgreSQL), and each delivery's key names its event
(unique per notification), so scanning twice queues an event once.

Each project costs a few index probes when nothing changed; the status history is read
only for the spike, and only when a dataset finished since the last scan.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, Q

from crunch.choices import DatasetState, Stage, State
from crunch.conf import crunch_settings
from crunch.models import Dataset, Delivery, Event, Notification, Project, Status, Watch
from crunch.models.notifications import EVENT_FIELD
from crunch.services.notifications.payloads import failed_payload, finished_payload, spike_payload

SETTLE = datetime.timedelta(seconds=10)
"""A dataset's end is read this long after it: its status's transaction has committed by
then, so no failure lands behind the cursor unseen."""
OPEN = (DatasetState.PENDING, DatasetState.RUNNING)


@dataclasses.dataclass(frozen=True)
class Found:
    """One event of a project; ``time`` is when it happened, so a notification made after
    it does not hear of it."""

    event: Event
    key: str
    time: datetime.datetime
    payload: dict[str, Any]


def scan(now: datetime.datetime) -> int:
    """Queue the deliveries of every project's new events; return how many were queued."""
    projects = Project.objects.filter(notifications__active=True).distinct()
    return sum(scan_project(project, now) for project in projects.order_by("pk"))


def scan_project(project: Project, now: datetime.datetime) -> int:
    """Queue the deliveries of one project's new events (0 if another notifier holds it)."""
    with transaction.atomic():
        watch = Watch.objects.select_for_update(skip_locked=True).filter(project=project).first()
        if watch is None:
            watch = new_watch(project)
            if watch is None:  # another notifier holds it, or made it first
                return 0
        found = [
            *finished(project, watch),
            *failed(project, watch, now),
            *spike(project, watch, now),
        ]
        watch.save()
        if not found:
            return 0
        return enqueue(list(project.notifications.filter(active=True)), found, now)


def new_watch(project: Project) -> Watch | None:
    """The project's watch, made on its first scan: it reports what ends after its earliest
    active notification was made, not the project's past. None if one exists already."""
    if Watch.objects.filter(project=project).exists():
        return None
    since = project.notifications.filter(active=True).aggregate(first=Min("created"))["first"]
    if since is None:
        return None
    try:
        with transaction.atomic():
            return Watch.objects.create(project=project, failed_until=since, finished_at=since)
    except IntegrityError:
        return None


def finished(project: Project, watch: Watch) -> list[Found]:
    """The project ran dry: nothing pending or running, and a dataset ended since it last did."""
    datasets = Dataset.objects.filter(project=project)
    if datasets.filter(state__in=OPEN).exists():
        return []
    last = datasets.aggregate(last=Max("finished"))["last"]
    if last is None or (watch.finished_at is not None and last <= watch.finished_at):
        return []
    watch.finished_at = last
    counts = datasets.aggregate(
        total=Count("pk"),
        completed=Count("pk", filter=Q(state=DatasetState.COMPLETED)),
        failed=Count("pk", filter=Q(state=DatasetState.FAILED)),
    )
    return [
        Found(Event.FINISHED, f"finished:{last.isoformat()}", last,
              finished_payload(project, counts, last)),
    ]  # fmt: skip


def failed(project: Project, watch: Watch, now: datetime.datetime) -> list[Found]:
    """Datasets that failed for good since the last scan: one event naming them."""
    until = now - SETTLE
    since = watch.failed_until
    if until <= since:
        return []
    watch.failed_until = until
    window = Dataset.objects.filter(
        project=project, state=DatasetState.FAILED, finished__gt=since, finished__lte=until
    )
    count = window.count()
    if not count:
        return []
    fields = ("slug", "name", "attempts", "finished", "note")
    first = window.order_by("finished", "pk").values(*fields)[
        : crunch_settings.NOTIFY_FAILED_LISTED
    ]
    listed = [dict(row) for row in first]
    last = window.aggregate(last=Max("finished"))["last"] or until
    return [
        Found(Event.FAILED, f"failed:{since.isoformat()}", last,
              failed_payload(project, listed, count)),
    ]  # fmt: skip


def spike(project: Project, watch: Watch, now: datetime.datetime) -> list[Found]:
    """At least NOTIFY_SPIKE_RATIO of the last NOTIFY_SPIKE_RUNS runs failed; at most once
    in NOTIFY_SPIKE_SECONDS, and only with a run newer than the last spike's."""
    window = crunch_settings.NOTIFY_SPIKE_RUNS
    quiet = datetime.timedelta(seconds=crunch_settings.NOTIFY_SPIKE_SECONDS)
    if watch.spike_at is not None and now - watch.spike_at < quiet:
        return []
    datasets = Dataset.objects.filter(project=project, finished__isnull=False)
    last_end = datasets.aggregate(last=Max("finished"))["last"]
    if last_end is None or (watch.last_end is not None and last_end <= watch.last_end):
        return []  # nothing ended since the last look
    watch.last_end = last_end
    runs = last_runs(datasets, window)
    if len(runs) < window:
        return []
    failures = [run for run in runs if run.state == State.FAIL]
    if len(failures) < crunch_settings.NOTIFY_SPIKE_RATIO * window:
        return []
    newest = runs[0]
    if watch.spike_run is not None and newest.created <= watch.spike_run:
        return []
    watch.spike_at, watch.spike_run = now, newest.created
    return [
        Found(Event.SPIKE, f"spike:{newest.pk}", newest.created,
              spike_payload(project, runs=len(runs), failures=failures)),
    ]  # fmt: skip


def last_runs(datasets: Any, count: int) -> list[Status]:
    """The project's last ``count`` runs: their Fail or Upload Success statuses, newest first.

    Read among the ``count`` datasets that ended last (an index probe), whose statuses hold
    every one of those runs: a run's end sets its dataset's ``finished``. A dataset put back
    to pending by hand has no end any more, and its older runs are left out.
    """
    recent = list(datasets.order_by("-finished").values_list("pk", flat=True)[:count])
    ends = Q(state=State.FAIL) | Q(stage=Stage.UPLOAD, state=State.SUCCESS)
    statuses = Status.objects.filter(ends, dataset_id__in=recent).select_related("dataset")
    return list(statuses.order_by("-created", "-id")[:count])


def enqueue(notifications: list[Notification], found: list[Found], now: datetime.datetime) -> int:
    """One delivery per notification and event it listens to; a key queued before is kept."""
    rows = [
        Delivery(
            notification=notification,
            event=event.event,
            key=event.key,
            payload=event.payload,
            next_try=now,
            created=now,
        )
        for event in found
        for notification in notifications
        if getattr(notification, EVENT_FIELD[event.event]) and notification.created <= event.time
    ]
    if not rows:
        return 0
    queued = Delivery.objects.filter(
        notification__in=notifications, key__in={row.key for row in rows}
    )
    before = queued.count()
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return queued.count() - before
