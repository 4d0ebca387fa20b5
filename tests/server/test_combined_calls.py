"""Fewer round trips: a stage's Success with the next one's Start in one call, and the
Upload Success with the claim of the next dataset; six statuses per run all the same."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crunch.models import Dataset, Status
from tests.clientkit import SIX
from tests.factories import bulk_datasets, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def status(claim, dataset, stage, state, key):
    return {"dataset": dataset, "stage": stage, "state": state, "claim": claim, "key": key}


def test_four_calls_a_dataset_record_six_statuses_in_order_and_retries_change_nothing():
    project = make_project(name="C")
    bulk_datasets(project, 3)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    claimed = api.post("/api/projects/c/next/", {"holder": "n"}, format="json").json()
    calls, done = 1, []
    while claimed:
        claim, dataset = claimed["claim"]["id"], claimed["dataset"]["id"]
        k = f"{dataset}-"
        batches = [
            [status(claim, dataset, 1, 1, k + "1")],
            [status(claim, dataset, 1, 2, k + "2"), status(claim, dataset, 2, 1, k + "3")],
            [status(claim, dataset, 2, 2, k + "4"), status(claim, dataset, 3, 1, k + "5")],
        ]
        for batch in batches:
            for _ in range(2):  # a retried call (its answer lost) records nothing twice
                r = api.post("/api/statuses/batch/", batch, format="json")
                assert r.status_code == 201, r.content
            calls += 1
        last = {**status(claim, dataset, 3, 2, k + "6"), "next": {"project": "c", "holder": "n"}}
        r = api.post("/api/statuses/", last, format="json")
        assert r.status_code == 201 and r.json()["dataset_state"] == "completed"
        calls += 1
        done.append(dataset)
        claimed = r.json()["next"]
    assert len(done) == 3 and calls == 1 + 4 * 3
    for pk in done:
        rows = Status.objects.filter(dataset_id=pk).order_by("created", "id")
        assert [(s.stage, s.state) for s in rows] == SIX
        times = [s.created for s in rows]
        assert times == sorted(times) and len(set(times)) == 6  # each its own time
    assert set(Dataset.objects.values_list("state", flat=True)) == {"completed"}


def test_a_batch_stops_at_the_first_refused_status():
    project = make_project(name="C")
    bulk_datasets(project, 1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    claimed = api.post("/api/next/", {}, format="json").json()
    claim, dataset = claimed["claim"]["id"], claimed["dataset"]["id"]
    other = "00000000-0000-0000-0000-000000000000"
    r = api.post(
        "/api/statuses/batch/",
        [status(claim, dataset, 1, 1, "a"), status(other, dataset, 1, 2, "b")],
        format="json",
    )
    assert r.status_code == 409
    assert list(Status.objects.values_list("key", flat=True)) == ["a"]
