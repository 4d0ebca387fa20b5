from __future__ import annotations

import pytest

from crunch.choices import DatasetState
from crunch.models import Dataset, Status
from tests.factories import make_dataset, make_project

pytestmark = pytest.mark.django_db


def test_claim_then_six_statuses_complete_the_dataset(api):
    dataset = make_dataset(make_project(name="Alpha"), name="One")
    response = api.post("/api/next/", {"holder": "me@node1"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["dataset"]["slug"] == "alpha:one"
    assert body["project"]["workflow"] == "echo hello > hello.txt\n"
    claim = body["claim"]["id"]
    for stage in (1, 2, 3):
        for state in (1, 2):
            r = api.post(
                "/api/statuses/",
                {"dataset": dataset.pk, "stage": stage, "state": state, "claim": claim},
                format="json",
            )
            assert r.status_code == 201, r.json()
    dataset.refresh_from_db()
    assert dataset.state == DatasetState.COMPLETED
    assert Status.objects.filter(dataset=dataset).count() == 6
    assert api.post("/api/next/").status_code == 204
