"""The history of a project's workflow: every change is kept with who made it."""

from __future__ import annotations

from typing import Any

from crunch.models import Project, WorkflowChange, sha256_of


def record_change(
    project: Project, *, previous: str | None, user: Any = None
) -> WorkflowChange | None:
    """Record that ``project``'s workflow changed from ``previous`` (None: it is new).

    Returns None when the text did not change.
    """
    if previous is not None and previous == project.workflow:
        return None
    return WorkflowChange.objects.create(
        project=project,
        user=user if getattr(user, "pk", None) else None,
        sha256=project.workflow_sha256,
        previous_sha256=sha256_of(previous) if previous is not None else "",
        previous=previous or "",
    )
