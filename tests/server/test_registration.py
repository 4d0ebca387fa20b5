"""Bulk registration: one request per batch, idempotent, typed attributes, safe folders."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crunch.models import Attribute, Dataset
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def maintainer():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_user('keeper', role='maintainer')[1]}")
    return client


def test_register_is_idempotent_and_types_attributes(maintainer):
    make_project(name="Scans")
    body = [
        {"name": "a 1", "attributes": [{"key": "n", "kind": "int", "value": "3"},
                                       {"key": "at", "kind": "lat-long", "value": [1.5, 2]}]},
        {"name": "b", "base_file_path": "raw//b/"},
    ]  # fmt: skip
    r = maintainer.post("/api/projects/scans/datasets/", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"created": ["scans:a-1", "scans:b"], "existing": []}
    assert Dataset.objects.get(slug="scans:b").base_file_path == "raw/b"
    assert Attribute.objects.get(key="n").integer == 3
    assert Attribute.objects.get(key="at").display == "1.5, 2.0"
    r = maintainer.post("/api/projects/scans/datasets/", [*body, {"name": "c"}], format="json")
    assert r.json() == {"created": ["scans:c"], "existing": ["scans:a-1", "scans:b"]}
    assert Dataset.objects.count() == 3 and Attribute.objects.count() == 2


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        ({"name": "x", "base_file_path": "../etc"},
         "Dataset 'x': The folder '../etc' holds '..'; give a folder inside the storage."),
        ({"name": "x", "base_file_path": "crunch/other/one/inner"},
         "Dataset 'scans:x': the folder 'crunch/other/one/inner' overlaps the folder of dataset "
         "'other:one'; give each dataset a folder of its own."),
        ({"name": "x", "base_file_path": "crunch"},
         "Dataset 'scans:x': the folder 'crunch' overlaps the folder of dataset "
         "'other:one'; give each dataset a folder of its own."),
    ],
)  # fmt: skip
def test_register_refuses_unsafe_or_overlapping_folders(maintainer, entry, detail):
    make_project(name="Scans")
    make_dataset(make_project(name="Other"), name="one")
    r = maintainer.post("/api/projects/scans/datasets/", [entry], format="json")
    assert r.status_code == 400
    assert r.json()["datasets"] == [detail]
    assert Dataset.objects.count() == 1


def test_register_needs_a_maintainer(api):
    make_project(name="Scans", is_public=True)
    r = api.post("/api/projects/scans/datasets/", [{"name": "x"}], format="json")
    assert r.status_code == 403 and not Dataset.objects.exists()


def test_why_names_what_holds_a_dataset(api):
    from django.utils import timezone

    from crunch.services import claims

    project = make_project(name="P", is_public=True, max_attempts=3)
    first = make_dataset(project, name="first", priority=5)
    second = make_dataset(project, name="second")
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == (
        "Pending behind 1 dataset(s) of higher priority or older, "
        "but no live client is working on project 'p'."
    )
    assert why["command"] == "crunch loop --project p"
    claims.claim_dataset(first, holder="me@node1")
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == "Pending and next in line; 1 client(s) are at work on project 'p'."
    Dataset.objects.filter(pk=second.pk).update(
        state="failed", attempts=3, note="Traceback\nValueError: bad"
    )
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == (
        'Failed 3 of 3 attempt(s): it is not retried by itself. The last note: "ValueError: bad".'
    )
    assert why["command"] == "crunch retry p:second"
    later = timezone.now() + timezone.timedelta(minutes=5)
    Dataset.objects.filter(pk=second.pk).update(state="pending", attempts=1, not_before=later)
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"].startswith("Pending after failing 1 of 3 attempt(s); not to be retried")
    assert why["command"] == "crunch run p:second"
    why = api.get(f"/api/datasets/{first.slug}/why/").json()
    assert why["reason"].startswith("Running on host unknown (me@node1) since ")


def test_overview_counts_clients_by_job_and_groups_failures(api):
    from crunch.services import claims, statuses

    project = make_project(name="P", is_public=True)
    for name in ("a", "b"):
        make_dataset(project, name=name, state="failed", note=f"x\nOSError: {name}")
    make_dataset(project, name="c", state="failed", note="OSError: a")
    running = make_dataset(project, name="r")
    claim = claims.claim_dataset(running, holder="h")
    statuses.record_status(
        dataset=running, stage=1, state=1, claim_id=claim.id,
        diagnostics={"slurm_job_id": "77", "slurm_array_task_id": "2"},
    )  # fmt: skip
    body = api.get("/api/projects/p/overview/").json()
    assert body["failed"] == 3 and body["running"] == 1
    assert body["live_clients"] == 1 and body["clients_by_job"] == {"77": 1}
    assert [(f["count"], f["note"]) for f in body["failures"]] == [
        (1, "OSError: a"), (1, "OSError: a"), (1, "OSError: b"),
    ]  # fmt: skip
