"""Why a dataset is where it is: the paragraph ``crunch why`` prints, and what would move it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from crunch.choices import DatasetState, FailReason
from crunch.models import Dataset, Status
from crunch.services.retry_policy import Policy


@dataclass(frozen=True, kw_only=True)
class Explanation:
    dataset: str
    state: str
    reason: str
    command: str


def _when(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "an unknown time"


def _last_note(dataset: Dataset) -> str:
    note = (dataset.note or "").strip().splitlines()
    return f' The last note: "{note[-1][:300]}".' if note else ""


def _with(dataset: Dataset) -> str:
    """' with out-of-memory (probably)': the last failure's reason, if any."""
    if not dataset.last_reason:
        return ""
    detail = f" ({dataset.last_reason_detail})" if dataset.last_reason_detail else ""
    return f" with {dataset.last_reason}{detail}"


def _held(dataset: Dataset) -> bool:
    """Failed with attempts left: its last reason is one the project does not retry."""
    project = dataset.project
    rule = Policy.of(project.retry_policy).rule(dataset.last_reason or FailReason.UNKNOWN)
    return dataset.attempts < project.max_attempts and not rule.retry


def _needs(dataset: Dataset) -> str:
    wanted = []
    if dataset.needs_memory is not None:
        wanted.append(
            f"at least {filesizeformat(dataset.needs_memory)} ({dataset.needs_memory} bytes)"
        )
    if dataset.needs_seconds is not None:
        wanted.append(f"at least {dataset.needs_seconds} seconds")
    return " and ".join(wanted)


def live_clients(dataset: Dataset, now: datetime.datetime) -> int:
    """Clients holding an unexpired claim on the dataset's project."""
    return (
        Dataset.objects.running()
        .filter(project_id=dataset.project_id, lease_expires__gte=now)
        .count()
    )


def ahead_of(dataset: Dataset, now: datetime.datetime) -> int:
    """Pending datasets of the project that would be handed out before this one."""
    first = Q(priority__gt=dataset.priority) | Q(priority=dataset.priority, id__lt=dataset.pk)
    return Dataset.objects.ready(now).filter(first, project_id=dataset.project_id).count()


def explain(dataset: Dataset) -> Explanation:
    """One paragraph naming what holds ``dataset``, and the command that would move it."""
    now = timezone.now()
    project = dataset.project
    slug = dataset.slug
    attempts = f"{dataset.attempts} of {project.max_attempts} attempt(s)"
    if dataset.state == DatasetState.COMPLETED:
        reason = f"Completed at {_when(dataset.finished)} after {attempts}."
        command = f"crunch download {slug}"
    elif (
        dataset.state == DatasetState.RUNNING
        and dataset.lease_expires
        and (dataset.lease_expires < now)
    ):
        reason = (
            f"Its lease expired at {_when(dataset.lease_expires)}: the client that claimed it "
            f"({dataset.claim_holder}) stopped renewing it (killed, or cut off). It returns to "
            "the queue at the next claim, or at once when released."
        )
        command = f"crunch release {slug}"
    elif dataset.state == DatasetState.RUNNING:
        host = (
            Status.objects.filter(dataset=dataset).exclude(hostname="")
            .order_by("-created", "-id").values_list("hostname", flat=True).first()
        )  # fmt: skip
        stage = f" in {dataset.get_stage_display()}" if dataset.stage else ""
        reason = (
            f"Running{stage} on host {host or 'unknown'} ({dataset.claim_holder}) since "
            f"{_when(dataset.claimed)}, attempt {attempts}; its lease runs until "
            f"{_when(dataset.lease_expires)}, when it returns to the queue unless renewed."
        )
        command = f"crunch status --project {project.slug}"
    elif dataset.state == DatasetState.FAILED and _held(dataset):
        reason = (
            f"Failed {attempts} with {dataset.last_reason}, which the project's retry policy "
            f"does not retry: fix its cause first.{_last_note(dataset)}"
        )
        command = f"crunch retry {slug}"
    elif dataset.state == DatasetState.FAILED:
        reason = (
            f"Failed {attempts}{_with(dataset)}: it is not retried by itself.{_last_note(dataset)}"
        )
        command = f"crunch retry {slug}"
    elif dataset.state == DatasetState.PENDING and project.paused:
        reason = (
            f"Project {project.slug!r} is paused: it hands out no dataset until it is resumed."
            f"{_last_note(dataset)}"
        )
        command = f"crunch project resume {project.slug}"
    elif dataset.needs_memory is not None or dataset.needs_seconds is not None:
        reason = (
            f"Pending after failing {attempts}{_with(dataset)}; it goes only to a claim that "
            f"announces {_needs(dataset)}."
            f"{_last_note(dataset)}"
        )
        command = f"crunch submit --project {project.slug} --mem-retry x2 --time-retry x2"
    elif dataset.not_before and dataset.not_before > now:
        reason = (
            f"Pending after failing {attempts}{_with(dataset)}; not to be retried before "
            f"{_when(dataset.not_before)} (the project's retry delay).{_last_note(dataset)}"
        )
        command = f"crunch run {slug}"
    else:
        ahead = ahead_of(dataset, now)
        clients = live_clients(dataset, now)
        queue = (
            f"Pending behind {ahead} dataset(s) of higher priority or older"
            if ahead
            else "Pending and next in line"
        )
        if clients:
            reason = f"{queue}; {clients} client(s) are at work on project {project.slug!r}."
            command = f"crunch run {slug}"
        else:
            reason = f"{queue}, but no live client is working on project {project.slug!r}."
            command = f"crunch loop --project {project.slug}"
    return Explanation(dataset=slug, state=dataset.state, reason=reason, command=command)
