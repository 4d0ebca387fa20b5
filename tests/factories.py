"""Small factories: fill in defaults, let each test say what matters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model

from crunch.models import Dataset, Project
from crunch.services.accounts import client_token, create_token, issue_token


def make_project(**kwargs: Any) -> Project:
    kwargs.setdefault("name", "Project")
    kwargs.setdefault("workflow", "echo hello > hello.txt\n")
    kwargs.setdefault("allow_empty", True)  # most tests' datasets have no files
    return Project.objects.create(**kwargs)


def make_dataset(project: Project | None = None, **kwargs: Any) -> Dataset:
    kwargs.setdefault("name", "Dataset")
    return Dataset.objects.create(project=project or make_project(), **kwargs)


def bulk_datasets(
    project: Project,
    count: int,
    *,
    prefix: str = "ds",
    states: Sequence[str] = ("pending",),
    **fields: Any,
) -> None:
    """Create ``count`` datasets quickly (bulk_create skips save()), cycling ``states``."""
    if "state" in fields:
        states = (fields.pop("state"),)
    batch = 5000
    for start in range(0, count, batch):
        Dataset.objects.bulk_create(
            Dataset(
                project=project,
                name=f"{prefix}{i}",
                slug=f"{project.slug}:{prefix}{i}",
                base_file_path=f"crunch/{project.slug}/{prefix}{i}",
                state=states[i % len(states)],
                **fields,
            )
            for i in range(start, min(start + batch, count))
        )


def make_client_user(username: str = "worker") -> tuple[Any, str]:
    """A site-wide worker (what ``crunch_token NAME`` creates) and its API token."""
    token, _ = client_token(username)
    return get_user_model().objects.get(username=username), token


def make_user(
    username: str, *, role: str | None = None, projects: Sequence[Project] = ()
) -> tuple[Any, str]:
    """A user with ``role`` on ``projects`` (on every project when none), and a token."""
    if role is None:
        user = get_user_model().objects.create_user(username=username)
        return user, create_token(user)[1]
    issued = issue_token(username, role=role, projects=[project.slug for project in projects])
    return issued.user, issued.key
