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


def run_all(api, claimed, *, setup_start, then):
    """Report clean runs until no claim comes back: batches of a Success and the next
    Start (each posted twice, as a retry after a lost answer), and an Upload Success that
    claims the next dataset. Returns (calls after the first claim, dataset ids done)."""
    calls, done = 0, []
    while claimed:
        claim, dataset = claimed["claim"]["id"], claimed["dataset"]["id"]
        k = f"{dataset}-"
        batches = [
            [status(claim, dataset, 1, 2, k + "2"), status(claim, dataset, 2, 1, k + "3")],
            [status(claim, dataset, 2, 2, k + "4"), status(claim, dataset, 3, 1, k + "5")],
        ]
        if setup_start:
            batches.insert(0, [status(claim, dataset, 1, 1, k + "1")])
        for batch in batches:
            for _ in range(2):
                r = api.post("/api/statuses/batch/", batch, format="json")
                assert r.status_code == 201, r.content
            calls += 1
        last = {**status(claim, dataset, 3, 2, k + "6"), "next": then}
        r = api.post("/api/statuses/", last, format="json")
        assert r.status_code == 201 and r.json()["dataset_state"] == "completed"
        calls += 1
        done.append(dataset)
        claimed = r.json()["next"]
    return calls, done


def test_four_calls_a_dataset_record_six_statuses_in_order_and_retries_change_nothing():
    project = make_project(name="C")
    bulk_datasets(project, 3)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    claimed = api.post("/api/projects/c/next/", {"holder": "n"}, format="json").json()
    calls, done = run_all(api, claimed, setup_start=True, then={"project": "c", "holder": "n"})
    assert len(done) == 3 and calls == 4 * 3
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


def test_three_calls_a_dataset_when_the_claim_records_the_setup_start():
    project = make_project(name="C")
    bulk_datasets(project, 3)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    start = {"hostname": "node-1", "agent_user": "me"}
    first = {"holder": "n", "key": "claim-1", "start": start}
    claimed = api.post("/api/projects/c/next/", first, format="json").json()
    again = api.post("/api/projects/c/next/", first, format="json").json()  # answer lost
    assert again["claim"] == claimed["claim"] and claimed["started"] is again["started"] is True
    then = {"project": "c", "holder": "n", "start": start}
    calls, done = run_all(api, claimed, setup_start=False, then=then)
    assert len(done) == 3 and calls == 3 * 3
    for pk in done:
        rows = Status.objects.filter(dataset_id=pk).order_by("created", "id")
        assert [(s.stage, s.state) for s in rows] == SIX
        assert rows[0].hostname == "node-1" and rows[0].user is not None


def test_a_batch_after_the_run_ended_is_refused_and_records_nothing_more():
    project = make_project(name="C")
    bulk_datasets(project, 1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    claimed = api.post("/api/next/", {"start": {}}, format="json").json()
    claim, dataset = claimed["claim"]["id"], claimed["dataset"]["id"]
    ended = [status(claim, dataset, 1, 3, "f"), status(claim, dataset, 2, 1, "g")]
    r = api.post("/api/statuses/batch/", ended, format="json")
    assert r.status_code in (404, 409), r.content
    assert list(Status.objects.order_by("id").values_list("key", flat=True)) == [None, "f"]


def test_a_start_with_hostile_diagnostics_is_a_400_and_claims_nothing():
    project = make_project(name="C")
    bulk_datasets(project, 1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    for start in ({"hostname": "x" * 5000}, {"memory_total": 2**70}, "yes", {"hostname": "a\x00"}):
        r = api.post("/api/next/", {"start": start}, format="json")
        assert r.status_code == 400, (start, r.content)
    assert set(Dataset.objects.values_list("state", flat=True)) == {"pending"}


def claim_and_finish(api, project_slug, then):
    """Claim one dataset, report up to Upload Start; the body of its Upload Success."""
    claimed = api.post(f"/api/projects/{project_slug}/next/", {"start": {}}, format="json").json()
    claim, dataset = claimed["claim"]["id"], claimed["dataset"]["id"]
    for n, (stage, state) in enumerate(SIX[1:5]):
        r = api.post(
            "/api/statuses/", status(claim, dataset, stage, state, f"{dataset}-{n}"), format="json"
        )
        assert r.status_code == 201, r.content
    return {**status(claim, dataset, 3, 2, "last"), "next": then}


def test_an_upload_success_with_its_claim_retried_after_a_lost_answer_records_once():
    project = make_project(name="C")
    bulk_datasets(project, 3)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {make_user('node', role='worker')[1]}")
    last = claim_and_finish(api, "c", {"project": "c", "holder": "n", "key": "next-1"})
    first = api.post("/api/statuses/", last, format="json")
    again = api.post("/api/statuses/", last, format="json")
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert first.json()["next"]["claim"] == again.json()["next"]["claim"]
    assert Status.objects.filter(key="last").count() == 1
    assert Dataset.objects.filter(state="running").count() == 1


def test_an_upload_success_whose_claim_is_refused_is_recorded_all_the_same():
    project = make_project(name="C")
    make_project(name="Private")
    bulk_datasets(project, 5)
    _, token = make_user("node", role="worker", projects=[project])
    _, other = make_user("other", role="worker", projects=[project])
    api, rival = APIClient(), APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    rival.credentials(HTTP_AUTHORIZATION=f"Token {other}")
    assert rival.post("/api/next/", {"key": "taken"}, format="json").status_code == 200
    cases = [
        ({"key": "taken"}, 201),  # the key of another user's claim: a claim of one's own
        ({"project": "private"}, 201),  # nothing this user may take there: no claim
        ({"lease_seconds": 3}, 400),  # a malformed request: nothing recorded
    ]
    for n, (then, code) in enumerate(cases):
        last = claim_and_finish(api, "c", then)
        r = api.post("/api/statuses/", last, format="json")
        assert r.status_code == code, r.content
        recorded = Status.objects.filter(key="last").update(key=f"last-{n}")
        assert recorded == (0 if code == 400 else 1)
        if code == 201:
            assert (r.json()["next"] is None) is (n == 1)
    assert Dataset.objects.filter(state="completed").count() == 2
    # The rival's, the one claimed with the rival's key, the 400's.
    assert Dataset.objects.filter(state="running").count() == 3
    assert Dataset.objects.filter(claim_key="taken").count() == 2
