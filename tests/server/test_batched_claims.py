"""Claims of several datasets at once (``count``) and the batch renewal: what a loop with
several slots asks for, in a constant number of queries whatever the count."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from crunch.models import Client, Dataset, Status
from crunch.services import claims
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
    bulk_datasets(project, 100)
    _, token = make_user("node", role="worker", projects=[project])
    claims.reclaim_expired()  # the sweep runs every few seconds, not within each claim
    return api_of(token)


@pytest.mark.parametrize("count", [1, 16, 64])
@pytest.mark.parametrize("path", ["/api/next/", "/api/projects/q/next/"])
def test_a_claim_of_count_datasets_takes_four_queries_with_their_setup_starts(worker, count, path):
    body = {"holder": "node", "key": "k", "count": count, "start": {"hostname": "n1"}}
    with at_most_queries(4):  # token, claims, their projects, their Setup Starts
        r = worker.post(path, body, format="json")
    assert r.status_code == 200, r.content
    claimed = r.json()["claims"]
    assert len(claimed) == count and all(c["started"] for c in claimed)
    ids = [c["claim"]["id"] for c in claimed]
    assert len(set(ids)) == count
    rows = Dataset.objects.filter(claim_id__in=ids)
    assert sorted(rows.values_list("claim_key", flat=True)) == sorted(
        f"k:{i}" for i in range(count)
    )
    # In queue order: the i-th claim has the key k:i.
    keys = dict(rows.values_list("claim_id", "claim_key"))
    assert [keys[uuid.UUID(i)] for i in ids] == [f"k:{i}" for i in range(count)]
    starts = Status.objects.filter(claim_id__in=ids)
    assert starts.count() == count and set(starts.values_list("hostname", flat=True)) == {"n1"}


def test_a_retried_count_claim_answers_the_same_claims_and_makes_none(worker):
    body = {"holder": "node", "key": "again", "count": 5, "start": {}}
    first = worker.post("/api/next/", body, format="json").json()["claims"]
    again = worker.post("/api/next/", body, format="json").json()["claims"]
    assert [c["claim"]["id"] for c in again] == [c["claim"]["id"] for c in first]
    assert all(c["started"] for c in again)
    assert Dataset.objects.running().count() == 5
    assert Status.objects.count() == 5  # no Setup Start twice


def test_a_retry_after_the_queue_ran_dry_answers_the_claims_it_made():
    project = make_project(name="Few")
    bulk_datasets(project, 3)
    api = api_of(make_user("node", role="worker", projects=[project])[1])
    body = {"holder": "node", "key": "dry", "count": 8}
    first = api.post("/api/next/", body, format="json").json()["claims"]
    again = api.post("/api/next/", body, format="json").json()["claims"]
    assert len(first) == 3 and [c["claim"]["id"] for c in again] == [
        c["claim"]["id"] for c in first
    ]


def test_an_empty_queue_answers_an_empty_list_not_204():
    project = make_project(name="Empty")
    api = api_of(make_user("node", role="worker", projects=[project])[1])
    for path in ("/api/next/", "/api/projects/empty/next/"):
        r = api.post(path, {"count": 4}, format="json")
        assert (r.status_code, r.json()) == (200, {"claims": []})
    assert api.post("/api/next/", {}, format="json").status_code == 204  # as before


@pytest.mark.parametrize("count", [0, 65, "x", -1, None])
def test_count_out_of_bounds_is_a_400_of_one_line(worker, count):
    r = worker.post("/api/next/", {"count": count}, format="json")
    assert r.status_code == 400, r.content
    detail = r.json()["detail"]
    assert detail.startswith("Invalid input. count:") and "\n" not in detail


def test_a_count_key_leaves_room_for_the_claims_number(worker):
    r = worker.post("/api/next/", {"count": 2, "key": "k" * 61}, format="json")
    assert r.status_code == 400 and "60 characters" in r.json()["detail"]
    ok = worker.post("/api/next/", {"count": 2, "key": "k" * 60}, format="json")
    assert ok.status_code == 200


def test_a_status_next_with_count_answers_claims(worker):
    first = worker.post("/api/next/", {"holder": "n", "start": {}}, format="json").json()
    claim, dataset = first["claim"]["id"], first["dataset"]["id"]
    body = {
        "dataset": dataset, "stage": 3, "state": 2, "claim": claim, "key": "done", "slot": 2,
        "next": {"holder": "n", "count": 3, "slots": [2, 5, 6], "start": {}},
    }  # fmt: skip
    r = worker.post("/api/statuses/", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["slot"] == 2 and len(r.json()["next"]["claims"]) == 3
    ids = [c["claim"]["id"] for c in r.json()["next"]["claims"]]
    slots = [Status.objects.get(claim_id=i).slot for i in ids]
    assert slots == [2, 5, 6]


def test_a_claim_records_the_client_it_describes(worker):
    body = {"holder": "loop@n1", "count": 2, "client": {"slots": 8, "hostname": "n1"}}
    assert worker.post("/api/next/", body, format="json").status_code == 200
    client = Client.objects.get()
    assert (client.holder, client.slots, client.hostname) == ("loop@n1", 8, "n1")


def test_a_batch_renewal_renews_held_claims_and_answers_the_others_as_lost(worker):
    mine = [c["claim"]["id"] for c in worker.post(
        "/api/next/", {"holder": "loop@n1", "count": 40}, format="json"
    ).json()["claims"]]  # fmt: skip
    project = Dataset.objects.get(claim_id=mine[0]).project
    _, other_token = make_user("other", role="worker", projects=[project])
    other = api_of(other_token)
    theirs = other.post("/api/next/", {"count": 1}, format="json").json()["claims"][0]
    released = mine.pop()
    claims.release(uuid.UUID(released))
    unknown = str(uuid.uuid4())
    asked = [*mine, theirs["claim"]["id"], released, unknown]
    body = {"claims": asked, "lease_seconds": 600,
            "client": {"holder": "loop@n1", "slots": 40, "slurm_job_id": "77"}}  # fmt: skip
    with at_most_queries(3):  # token, the UPDATE ... RETURNING, the client's upsert
        r = worker.post("/api/claims/renew/", body, format="json")
    assert r.status_code == 200, r.content
    assert [x["id"] for x in r.json()["renewed"]] == mine
    assert r.json()["lost"] == [theirs["claim"]["id"], released, unknown]
    client = Client.objects.get()
    assert (client.holder, client.slots, client.slurm_job_id) == ("loop@n1", 40, "77")
    # Without a length, each lease by its own.
    r = worker.post("/api/claims/renew/", {"claims": mine[:2]}, format="json")
    assert [x["id"] for x in r.json()["renewed"]] == mine[:2] and r.json()["lost"] == []


def test_a_batch_renewal_of_too_many_or_malformed_claims_is_a_400(worker):
    many = [str(uuid.uuid4()) for _ in range(513)]
    for body in ({"claims": many}, {"claims": ["x"]}, {"claims": "x"}, {}):
        r = worker.post("/api/claims/renew/", body, format="json")
        assert r.status_code == 400 and "\n" not in r.json()["detail"], body
    r = worker.post("/api/claims/renew/", {"claims": many[:512]}, format="json")
    assert r.status_code == 200 and len(r.json()["lost"]) == 512


def test_a_worker_whose_role_was_taken_keeps_no_claim_alive(worker):
    ids = [c["claim"]["id"] for c in worker.post(
        "/api/next/", {"count": 2}, format="json"
    ).json()["claims"]]  # fmt: skip
    from crunch.models import ProjectRole

    ProjectRole.objects.all().delete()
    r = worker.post("/api/claims/renew/", {"claims": ids}, format="json")
    assert (r.status_code, r.json()["renewed"], r.json()["lost"]) == (200, [], ids)


def test_the_overview_and_the_project_page_show_each_loop_s_slots(worker, client):
    body = {"holder": "loop@n1", "count": 3, "start": {"hostname": "n1", "slurm_job_id": "77",
            "slurm_array_task_id": "2"}, "slots": [0, 4, 5]}  # fmt: skip
    ids = [
        c["claim"]["id"] for c in worker.post("/api/next/", body, format="json").json()["claims"]
    ]
    loop = {"holder": "loop@n1", "slots": 8, "hostname": "n1", "slurm_job_id": "77"}
    renew = {"claims": ids, "lease_seconds": 60, "client": loop}
    assert worker.post("/api/claims/renew/", renew, format="json").status_code == 200
    overview = worker.get("/api/projects/q/overview/").json()
    assert overview["slots"] == [{
        "holder": "loop@n1", "hostname": "n1", "slurm_job_id": "77", "slurm_array_task_id": "",
        "slots": 8, "busy": 3, "free": 5,
    }]  # fmt: skip
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="node"))
    page = client.get("/projects/q/").content.decode()
    assert "Slots of the loops" in page and "loop@n1" in page
    dataset = Dataset.objects.get(claim_id=ids[1])
    page = client.get(f"/datasets/{dataset.slug}/").content.decode()
    assert "n1 · job 77_2 · slot 4" in page


@pytest.mark.postgres
def test_a_loop_s_heartbeat_and_its_batches_at_once_never_deadlock():
    """A loop's heartbeat renews every claim it holds while its batch calls record their
    statuses: both lock the same datasets, each in the order of their ids, so neither
    waits for the other for good (PostgreSQL would end one of them as a deadlock)."""
    project = make_project(name="Busy")
    bulk_datasets(project, 64)
    _, token = make_user("loop", role="worker", projects=[project])
    loop = api_of(token)
    taken = loop.post("/api/next/", {"holder": "l", "count": 64}, format="json").json()["claims"]
    held = [(c["claim"]["id"], c["dataset"]["id"]) for c in taken]
    client = {"holder": "l", "slots": 64}
    failed: list[str] = []
    stop = threading.Event()

    def heartbeat() -> None:
        api = api_of(token)
        body = {"claims": [c for c, _ in reversed(held)], "lease_seconds": 600, "client": client}
        try:
            while not stop.is_set():
                r = api.post("/api/claims/renew/", body, format="json")
                if r.status_code != 200 or r.json()["lost"]:
                    failed.append(f"renewal: {r.status_code} {r.content[:200]!r}")
        except Exception as exc:  # the test client raises what the view raised
            failed.append(f"renewal: {exc!r}")
        finally:
            connection.close()  # this thread's own

    beating = threading.Thread(target=heartbeat)
    beating.start()
    try:
        for n, (stage, state) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]):
            statuses = [
                {"dataset": d, "stage": stage, "state": state, "claim": c, "key": f"{d}-{n}"}
                for c, d in held
            ]
            body = {"statuses": statuses, "next": {"holder": "l", "count": 1, "client": client}}
            r = loop.post("/api/statuses/batch/", body, format="json")
            assert r.status_code == 200, r.content
            assert {x["code"] for x in r.json()["results"]} == {201}
    finally:
        stop.set()
        beating.join()
    assert failed == []
