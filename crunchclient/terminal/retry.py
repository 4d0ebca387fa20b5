"""``crunch retry``: put failed datasets back to pending."""

from __future__ import annotations

from crunchclient.server.connection import Connection


def retry(connection: Connection, *, dataset: str | None = None, project: str | None = None) -> str:
    """Put failed datasets back to pending: one by slug, or all of a project's."""
    if dataset:
        answer = connection.retry_dataset(dataset)
        return f"Dataset {answer['slug']!r} is {answer['state']} again."
    assert project
    count = connection.retry_project(project)
    return f"{count} failed dataset(s) of project {project!r} are pending again."
