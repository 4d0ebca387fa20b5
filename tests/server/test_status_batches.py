"""The object form of ``POST api/statuses/batch/``: statuses of many datasets in one call,
each answered on its own, in a constant number of queries whatever their number."""

from __future__ import annotations

import time
import uuid

import pytest
from rest_framework.test import APIClient

from crunch.models import Client, Dataset, Status
from crunch.services import claims
from tests.clientkit import SIX
from tests.factories import bulk_datasets, make_project, make_user
from tests.server.test_query_counts import at_most_queries

pytestmark = pytest.mark.django_db(transaction=True)


def api_of(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


@pytest.fixture
def worker() -> APIClient:
    project = make_project(name="Q")
    bulk_datasets(project, 200)
    _, token = make_user("node", role="worker", projects=[project])
    claims.reclaim_expired()
    return api_of(token)


def claim(api: APIClient, count: int) -> list[tuple[str, int]]:
    r = api.post("/api/next/", {"holder": "n", "count": count, "start": {}}, format="json")
    return [(c["claim"]["id"], c["dataset"]["id"]) for c in r.json()["claims"]]


def status(claim_id, dataset, stage, state, key, slot=None):
    body = {"dataset": dataset, "stage": stage, "state": state, "claim": claim_id, "key": key}
    return body if slot is None else {**body, "slot": slot}


def batch_of(held, pairs, tag):
    """Each held run's statuses ``pairs`` (stage, state), with keys of ``tag``."""
    return [
        status(c, d, stage, state, f"{d}-{tag}{n}", slot=i)
        for i, (c, d) in enumerate(held)
        for n, (stage, state) in enumerate(pairs)
    ]


@pytest.mark.parametrize("size", [1, 16, 64])
def test_a_batch_of_statuses_across_datasets_takes_four_queries(worker, size):
    held = claim(worker, size)
    body = {"statuses": batch_of(held, [(1, 2), (2, 1)], "a")}
    with at_most_queries(4):  # token, the rows locked, one INSERT, one UPDATE
        r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    results = r.json()["results"]
    assert [x["code"] for x in results] == [201] * 2 * size
    assert Status.objects.count() == 3 * size
    # The end of every run, and the next claims, in one more call of constant cost.
    body = {
        "statuses": batch_of(held, [(2, 2), (3, 1), (3, 2)], "b"),
        "next": {"holder": "n", "count": size, "start": {}},
    }
    with at_most_queries(7):  # and the claims, their projects and their Setup Starts
        r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    assert {x["status"]["dataset_state"] for x in r.json()["results"]} >= {"completed"}
    assert len(r.json()["claims"]) == size
    assert Dataset.objects.completed().count() == size
    for _, dataset in held:
        rows = Status.objects.filter(dataset_id=dataset).order_by("created", "id")
        assert [(s.stage, s.state) for s in rows] == SIX
        assert len({s.created for s in rows}) == 6  # each its own time
    assert set(Status.objects.exclude(slot=None).values_list("slot", flat=True)) == set(range(size))


def test_a_retried_batch_records_nothing_twice(worker):
    held = claim(worker, 4)
    body = {"statuses": batch_of(held, [(1, 2), (2, 1)], "r")}
    first = worker.post("/api/statuses/batch/", body, format="json").json()["results"]
    again = worker.post("/api/statuses/batch/", body, format="json").json()["results"]
    assert [x["code"] for x in first] == [201] * 8 and [x["code"] for x in again] == [200] * 8
    assert [x["status"]["id"] for x in again] == [x["status"]["id"] for x in first]
    assert Status.objects.count() == 4 + 8


def test_a_lost_claim_refuses_only_its_own_statuses(worker):
    held = claim(worker, 3)
    lost_claim, lost = held[1]
    claims.release(uuid.UUID(lost_claim), note="gone")
    body = {"statuses": [
        *batch_of(held[:1], [(1, 2)], "x"),
        status(lost_claim, lost, 1, 2, "l1"), status(lost_claim, lost, 2, 1, "l2"),
        *batch_of(held[2:], [(1, 2)], "x"),
        status(held[0][0], "q:no-such-dataset", 1, 2, "u1"),
        {"dataset": held[2][1], "stage": 9, "state": 1},
    ]}  # fmt: skip
    r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    results = r.json()["results"]
    assert [x["code"] for x in results] == [201, 409, 409, 201, 404, 400]
    assert "no longer held" in results[1]["detail"] and results[2] == results[1]
    assert results[5]["detail"].startswith("Invalid input. stage:")
    assert not Status.objects.filter(dataset_id=lost, key__in=["l1", "l2"]).exists()


def test_a_status_after_its_run_ended_is_refused_alone(worker):
    (held,) = claim(worker, 1)
    (other,) = claim(worker, 1)
    body = {"statuses": [
        status(*held, 1, 3, "f"), status(*held, 2, 1, "after"), status(*other, 1, 2, "o"),
    ]}  # fmt: skip
    results = worker.post("/api/statuses/batch/", body, format="json").json()["results"]
    assert [x["code"] for x in results] == [201, 409, 201]


def test_the_list_form_answers_as_before(worker):
    ((claim_id, dataset),) = claim(worker, 1)
    r = worker.post("/api/statuses/batch/", [status(claim_id, dataset, 1, 2, "s")], format="json")
    assert r.status_code == 201 and isinstance(r.json(), list)


def test_an_empty_or_malformed_object_batch(worker):
    r = worker.post("/api/statuses/batch/", {"statuses": []}, format="json")
    assert (r.status_code, r.json()) == (200, {"results": []})
    r = worker.post("/api/statuses/batch/", {"statuses": "x"}, format="json")
    assert r.status_code == 400 and "\n" not in r.json()["detail"]
    r = worker.post("/api/statuses/batch/", {"statuses": [{}, "x"]}, format="json")
    assert r.status_code == 400, r.content
    assert "Expected a dictionary of items" in r.json()["detail"]
    assert "\n" not in r.json()["detail"]


def test_a_queued_status_is_recorded_when_it_happened_never_before_its_claim(worker):
    """A loop queues a Start that needs no answer; its ``age`` says how long ago it was
    made, so the history shows when the stage began, not when the call came."""
    (held,) = claim(worker, 1)
    claim_id, dataset = held
    claimed = Dataset.objects.get(pk=dataset).claimed
    time.sleep(0.6)  # the Setup Success below was made 0.5 s ago: after the claim
    started = status(claim_id, dataset, 1, 2, "s")  # Setup Success, made 0.5 s before the call
    body = {"statuses": [{**started, "age": 0.5}, status(claim_id, dataset, 2, 1, "w")]}
    r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    success, workflow = Status.objects.filter(dataset_id=dataset).order_by("id")[1:]
    assert 0.4 < (workflow.created - success.created).total_seconds() < 5
    assert success.created >= claimed
    # An age reaching before the claim, or before the status before it, is held to it: a
    # retried call's stale age never reorders the history.
    body = {"statuses": [{**status(claim_id, dataset, 2, 2, "x"), "age": 3600}]}
    worker.post("/api/statuses/batch/", body, format="json")
    assert Status.objects.get(dataset_id=dataset, key="x").created == workflow.created
    # A negative, huge or non-numeric age is a 400 naming the field.
    for age in (-1, 86401, "soon"):
        body = {"statuses": [{**status(claim_id, dataset, 3, 1, f"a{age}"), "age": age}]}
        r = worker.post("/api/statuses/batch/", body, format="json")
        assert r.status_code == 400 or r.json()["results"][0]["code"] == 400, r.content
        assert "age" in r.content.decode()


def test_a_batch_with_a_lost_claim_still_claims_next(worker):
    """Statuses and claims go in one transaction when every status is recorded in the one
    pass; with a lost claim among them they go one after another, answered as before."""
    held = claim(worker, 3)
    lost_claim, _ = held[1]
    claims.release(uuid.UUID(lost_claim), note="gone")
    body = {
        "statuses": batch_of(held, [(1, 2), (2, 1)], "x"),
        "next": {"holder": "n", "count": 2, "start": {}},
    }
    r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    assert [x["code"] for x in r.json()["results"]] == [201, 201, 409, 409, 201, 201]
    assert len(r.json()["claims"]) == 2
    assert Status.objects.filter(dataset_id__in=[held[0][1], held[2][1]]).count() == 6


def test_a_batch_and_its_claims_record_the_loop_it_describes(worker):
    held = claim(worker, 2)
    client = {"holder": "loop-1", "slots": 8, "hostname": "node-7"}
    body = {
        "statuses": batch_of(held, [(1, 2), (2, 1), (2, 2), (3, 1), (3, 2)], "c"),
        "next": {"holder": "loop-1", "count": 2, "start": {}, "client": client},
    }
    with at_most_queries(8):  # and the loop's record, in the same transaction
        r = worker.post("/api/statuses/batch/", body, format="json")
    assert r.status_code == 200, r.content
    assert len(r.json()["claims"]) == 2
    assert Dataset.objects.completed().count() == 2
    (loop,) = Client.objects.filter(holder="loop-1")
    assert (loop.slots, loop.hostname) == (8, "node-7")
