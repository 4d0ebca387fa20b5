"""Issue 23, points 4 and 5: failures waiting for a retry and expired leases are shown as such.

Through the real API and pages: a dataset fails once, the project's retry delay holds it
back; another's client dies and its lease runs out.
"""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from crunch.models import Dataset
from tests.clientkit import SIX
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def worker(project) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    return api


def fail_once(api: APIClient, project, note: str) -> dict:
    claim = api.post(f"/api/projects/{project.slug}/next/", {"holder": "n@h"}, format="json")
    assert claim.status_code == 200, claim.content
    body = {"dataset": claim.json()["dataset"]["id"], "claim": claim.json()["claim"]["id"]}
    for stage, state in ((1, 1), (1, 2), (2, 1)):
        assert (
            api.post("/api/statuses/", {**body, "stage": stage, "state": state}).status_code == 201
        )
    answer = api.post("/api/statuses/", {**body, "stage": 2, "state": 3, "note": note})
    assert answer.json()["dataset_state"] == "pending"
    return claim.json()


def test_a_failure_waiting_for_its_retry_is_counted_shown_and_timed():
    project = make_project(name="Words", slug="words", retry_delay=600, is_public=True)
    make_dataset(project, name="a")
    api = worker(project)
    fail_once(api, project, "Traceback\nValueError: the column is empty")

    stats = api.get("/api/projects/words/stats/").json()
    assert (stats["pending"], stats["failed"], stats["retrying"]) == (1, 0, 1)
    retry_at = datetime.datetime.fromisoformat(stats["retry_at"])
    assert 590 <= (retry_at - timezone.now()).total_seconds() <= 600
    assert 590 <= stats["eta_seconds"] <= 600  # not 0, not "unknown"
    page = Client().get("/projects/words/").content.decode()
    assert "No dataset has failed" not in page
    assert "ValueError: the column is empty" in page
    assert "(1 waiting to retry)" in page and "Failed, waiting to retry" in page


def test_an_expired_lease_is_said_to_be_expired_with_the_command_that_moves_it():
    project = make_project(name="Words", slug="words", is_public=True)
    make_dataset(project, name="a")
    api = worker(project)
    claim = api.post("/api/projects/words/next/", {"holder": "n@h"}, format="json").json()
    past = timezone.now() - datetime.timedelta(minutes=3)
    Dataset.objects.update(lease_expires=past)  # the client was killed; nobody renewed it

    why = api.get("/api/datasets/words:a/why/").json()
    assert why["reason"].startswith(
        f"Its lease expired at {past:%Y-%m-%d %H:%M:%S} UTC: the client that claimed it (n@h) "
        "stopped renewing it (killed, or cut off). It returns to the queue at the next claim"
    )
    assert why["command"] == "crunch release words:a"
    assert api.get("/api/projects/words/stats/").json()["lease_expired"] == 1
    assert "Lease expired" in Client().get("/projects/words/").content.decode()
    assert claim["dataset"]["slug"] == "words:a"


def test_six_statuses_leave_nothing_waiting():
    project = make_project(name="Words", slug="words")
    make_dataset(project, name="a")
    api = worker(project)
    claim = api.post("/api/projects/words/next/", {"holder": "n@h"}, format="json").json()
    for stage, state in SIX:
        api.post(
            "/api/statuses/",
            {
                "dataset": claim["dataset"]["id"],
                "claim": claim["claim"]["id"],
                "stage": stage,
                "state": state,
            },
        )
    stats = api.get("/api/projects/words/stats/").json()
    assert (stats["completed"], stats["retrying"], stats["lease_expired"]) == (1, 0, 0)
