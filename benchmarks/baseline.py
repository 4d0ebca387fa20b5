"""Projects and datasets made and checked alike on this checkout and an older commit.

benchmarks/capacity.py and benchmarks/overhead.py run both side by side (the servers,
databases and worktrees come from benchmarks/harness.py). The two differ in how tokens are
made (0.2's ``crunch_token --role``, the older 'crunch clients' group, see
``harness.Version.tokens``) and how datasets are registered (the bulk endpoint, or the ORM
through ``manage.py shell`` where there is none); the helpers here hide that.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from benchmarks.harness import Database, Server, session

SIX = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
"""Setup, Workflow, Upload; each Start then Success: a clean run's statuses, in order."""


def create_project(
    server: Server, token: str, name: str, workflow: str, container: str = ""
) -> str:
    """Create a project whose datasets may be empty (run in ``container`` if given);
    return its slug."""
    body: dict[str, Any] = {
        "name": name, "workflow": workflow, "allow_empty": True, "retry_delay": 0
    }  # fmt: skip
    if container:
        body["container"] = container
    response = session(token).post(f"{server.url}/api/projects/", json=body, timeout=30)
    if response.status_code >= 400:
        raise RuntimeError(f"creating project {name!r} failed: {response.text[:300]}")
    return str(response.json()["slug"])


LEGACY_REGISTER = """
from crunch.models import Dataset, Project
project = Project.objects.get(slug={slug!r})
for i in range({count}):
    Dataset.objects.create(project=project, name=f"d{{i:05}}")
"""


def register_datasets(server: Server, token: str, slug: str, count: int) -> None:
    """Add ``count`` empty datasets to project ``slug``: in bulk, or through the older ORM."""
    if server.version.legacy:
        code = LEGACY_REGISTER.format(slug=slug, count=count)
        server.version.manage("shell", "-c", code, env=server.env)
        return
    api = session(token)
    for start in range(0, count, 5000):
        batch = [{"name": f"d{i:05}"} for i in range(start, min(count, start + 5000))]
        response = api.post(f"{server.url}/api/projects/{slug}/datasets/", json=batch, timeout=120)
        if response.status_code >= 400:
            raise RuntimeError(f"registering datasets failed: {response.text[:300]}")


def completion(database: Database, slug: str) -> dict[str, int]:
    """How many datasets of ``slug`` completed exactly once (six statuses, in order)."""
    rows = database.query(
        "SELECT d.id, d.state, s.stage, s.state FROM crunch_dataset d "
        "JOIN crunch_project p ON p.id = d.project_id "
        "LEFT JOIN crunch_status s ON s.dataset_id = d.id "
        "WHERE p.slug = %s ORDER BY d.id, s.created, s.id",
        (slug,),
    )
    runs: dict[int, tuple[str, list[tuple[int, int]]]] = {}
    for dataset, state, stage, status_state in rows:
        _, seen = runs.setdefault(dataset, (state, []))
        if stage is not None:
            seen.append((stage, status_state))
    good = sum(1 for state, seen in runs.values() if state == "completed" and seen == SIX)
    return {"datasets": len(runs), "completed once": good, "wrong": len(runs) - good}


def status_times(database: Database, slug: str) -> tuple[float, float]:
    """Seconds since the epoch of the project's first Setup Start and last Upload Success."""
    (first, last), *_ = database.query(
        "SELECT MIN(CASE WHEN s.stage = 1 AND s.state = 1 THEN s.created END), "
        "MAX(CASE WHEN s.stage = 3 AND s.state = 2 THEN s.created END) "
        "FROM crunch_status s JOIN crunch_dataset d ON d.id = s.dataset_id "
        "JOIN crunch_project p ON p.id = d.project_id WHERE p.slug = %s",
        (slug,),
    )
    return epoch(first), epoch(last)


def epoch(value: Any) -> float:
    """A timestamp as PostgreSQL (datetime) or SQLite (text, UTC) returns it; NaN for
    none (no dataset got that far)."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())
