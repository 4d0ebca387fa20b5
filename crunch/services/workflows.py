"""The history of a project's workflow and of the container it runs in: every change is
kept with who made it."""

from __future__ import annotations

from typing import Any

from crunch.models import Project, WorkflowChange, sha256_of


def record_change(
    project: Project, *, previous: str | None, previous_container: str = "", user: Any = None
) -> WorkflowChange | None:
    """Record that ``project``'s workflow changed from ``previous`` (None: it is new), or
    its container from ``previous_container``.

    Returns None when neither changed.
    """
    if (
        previous is not None
        and previous == project.workflow
        and previous_container == project.container
    ):
        return None
    return WorkflowChange.objects.create(
        project=project,
        user=user if getattr(user, "pk", None) else None,
        sha256=project.workflow_sha256,
        previous_sha256=sha256_of(previous) if previous is not None else "",
        previous=previous or "",
        container=project.container,
        previous_container=previous_container if previous is not None else "",
    )
