"""Workflow provenance: every change kept with who made it; every run's workflow SHA-256."""

from __future__ import annotations

import hashlib

import pytest
from rest_framework.test import APIClient

from crunch.models import WorkflowChange
from crunch.services import claims, statuses
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_workflow_change_is_recorded_and_shown_with_the_sha_each_run_used(client):
    project = make_project(name="P", is_public=True, workflow="echo one\n")
    dataset = make_dataset(project, name="d")
    claim = claims.claim_dataset(dataset, holder="h")
    statuses.record_status(
        dataset=dataset, stage=2, state=1, claim_id=claim.id, workflow_sha256=sha("echo one\n")
    )
    keeper, token = make_user("keeper", role="maintainer", projects=[project])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    r = api.patch("/api/projects/p/", {"workflow": "echo two"}, format="json")
    assert r.status_code == 200
    change = WorkflowChange.objects.get()
    assert (change.user, change.sha256, change.previous) == (keeper, sha("echo two"), "echo one\n")
    assert change.previous_sha256 == sha("echo one\n")
    assert api.patch("/api/projects/p/", {"description": "x"}, format="json").status_code == 200
    assert WorkflowChange.objects.count() == 1  # only workflow edits are changes

    two, one = sha("echo two"), sha("echo one\n")
    page = client.get("/projects/p/").content.decode()
    assert f'<code title="{two}">{two[:12]}</code>' in page
    assert "<td>keeper</td>" in page
    page = client.get("/datasets/p:d/").content.decode()
    assert f"{one[:12]}</code>, <strong>not</strong> the project" in page


def test_the_admin_refuses_a_dataset_folder_outside_storage_or_in_another(admin_client):
    project = make_project(name="P")
    make_dataset(project, name="one")
    dataset = make_dataset(project, name="two")
    url = f"/admin/crunch/dataset/{dataset.pk}/change/"
    form = {"project": project.pk, "name": "two", "slug": "p:two", "priority": 0}
    for path, message in [
        ("../../etc", "The folder &#x27;../../etc&#x27; holds &#x27;..&#x27;"),
        ("crunch/p/one/x", "lies inside the folder of dataset &#x27;p:one&#x27;"),
    ]:
        page = admin_client.post(url, {**form, "base_file_path": path}).content.decode()
        assert message in page
    dataset.refresh_from_db()
    assert dataset.base_file_path == "crunch/p/two"


def test_the_project_page_names_the_slurm_job_of_each_client(client):
    project = make_project(name="P", is_public=True)
    dataset = make_dataset(project, name="d")
    claim = claims.claim_dataset(dataset, holder="node1")
    statuses.record_status(
        dataset=dataset, stage=1, state=1, claim_id=claim.id,
        diagnostics={"slurm_job_id": "4242", "slurm_array_task_id": "3", "hostname": "n1"},
    )  # fmt: skip
    page = client.get("/projects/p/").content.decode()
    assert "<td>n1</td>\n        <td>4242_3</td>" in page
