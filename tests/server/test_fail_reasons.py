"""Failure reasons through the API: recorded on each Fail (alone, in either batch form, by
a 0.1 client), checked, carried by the next claim; and the claim filter on a dataset's
needed memory and time, in every claim path. Runs on SQLite and on PostgreSQL
(DATABASE_URL=postgres://...)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from crunch.choices import FailReason
from crunch.models import Dataset, Status
from crunch.services import claims
from tests.factories import make_dataset, make_project, make_user
from tests.server.test_query_counts import at_most_queries

pytestmark = pytest.mark.django_db

GIB = 2**30
CHOICES = ", ".join(FailReason.values)


@pytest.fixture
def project() -> Any:
    return make_project(name="Scans", max_attempts=3)


@pytest.fixture
def worker(project: Any) -> APIClient:
    _, token = make_user("node", role="worker", projects=[project])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def claim(api: APIClient, **body: Any) -> dict[str, Any] | None:
    answer = api.post("/api/projects/scans/next/", {"holder": "n", **body}, format="json")
    assert answer.status_code in (200, 204), answer.content
    return answer.json() if answer.status_code == 200 else None


def fail(api: APIClient, claimed: dict[str, Any], **extra: Any) -> Any:
    body = {
        "dataset": claimed["dataset"]["id"], "stage": 2, "state": 3, "note": "boom",
        "claim": claimed["claim"]["id"], **extra,
    }  # fmt: skip
    return api.post("/api/statuses/", body, format="json")


@pytest.mark.parametrize("reason", FailReason.values)
def test_each_reason_is_recorded_on_the_status_and_the_dataset(project, worker, reason):
    dataset = make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    answer = fail(worker, claimed, reason=reason, reason_detail="3")
    assert answer.status_code == 201, answer.content
    assert (answer.json()["reason"], answer.json()["reason_detail"]) == (reason, "3")
    status = Status.objects.get(state=3)
    assert (status.reason, status.reason_detail) == (reason, "3")
    dataset.refresh_from_db()
    assert (dataset.last_reason, dataset.last_reason_detail, dataset.note) == (reason, "3", "boom")


def test_an_unknown_reason_is_refused_in_one_line_naming_the_choices(project, worker):
    make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    answer = fail(worker, claimed, reason="oom")
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        f"Invalid input. reason: 'oom' is not a failure reason; use one of {CHOICES}."
    )
    assert not Status.objects.exists()


def test_an_unknown_reason_in_a_batch_is_refused_alone(project, worker):
    make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    ids = {"dataset": claimed["dataset"]["id"], "claim": claimed["claim"]["id"]}
    listed = worker.post(
        "/api/statuses/batch/", [{**ids, "stage": 2, "state": 3, "reason": "nope"}], format="json"
    )
    assert listed.status_code == 400
    body = {"statuses": [{**ids, "stage": 2, "state": 3, "reason": "nope"}]}
    answer = worker.post("/api/statuses/batch/", body, format="json")
    assert answer.status_code == 200
    (result,) = answer.json()["results"]
    assert result["code"] == 400 and "'nope' is not a failure reason" in result["detail"]


def test_a_reason_goes_with_a_fail_only(project, worker):
    make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    body = {
        "dataset": claimed["dataset"]["id"], "stage": 1, "state": 2,
        "claim": claimed["claim"]["id"], "reason": "signal",
    }  # fmt: skip
    answer = worker.post("/api/statuses/", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["reason"] == ["Only a Fail has a reason, a memory or a time limit."]


def test_a_fail_without_a_reason_as_0_1_clients_send_is_unknown(project, worker):
    dataset = make_dataset(project, name="d")
    for state, note in ((1, ""), (3, "Traceback...")):  # no claim id, no reason: 0.1's way
        body = {"dataset": dataset.pk, "stage": 1, "state": state, "note": note}
        assert worker.post("/api/statuses/", body, format="json").status_code == 201
    assert Status.objects.get(state=3).reason == "unknown"
    dataset.refresh_from_db()
    assert (dataset.state, dataset.last_reason) == ("pending", "unknown")
    # Today's client, with a claim and no reason, alike.
    claimed = claim(worker)
    assert claimed is not None
    assert fail(worker, claimed).json()["reason"] == "unknown"


def test_both_batch_forms_record_the_reasons(project, worker):
    first, second = make_dataset(project, name="a"), make_dataset(project, name="b")
    one, two = (claim(worker) for _ in range(2))
    assert one is not None and two is not None
    run = [
        {"dataset": one["dataset"]["id"], "claim": one["claim"]["id"], "stage": s, "state": t,
         **extra}
        for s, t, extra in ((1, 2, {}), (2, 3, {"reason": "exit-code", "reason_detail": "3"}))
    ]  # fmt: skip
    assert worker.post("/api/statuses/batch/", run, format="json").status_code == 201
    body = {"statuses": [{
        "dataset": two["dataset"]["id"], "claim": two["claim"]["id"], "stage": 2, "state": 3,
        "reason": "signal", "reason_detail": "SIGKILL",
    }]}  # fmt: skip
    with at_most_queries(4):  # token, the rows locked, one INSERT, one UPDATE: as before
        answer = worker.post("/api/statuses/batch/", body, format="json")
    assert answer.json()["results"][0]["code"] == 201
    reasons = dict(Dataset.objects.values_list("name", "last_reason_detail"))
    assert reasons == {"a": "3", "b": "SIGKILL"}
    assert {first.pk, second.pk} == set(Dataset.objects.values_list("pk", flat=True))


def test_the_next_claim_carries_the_attempt_and_the_last_reason(project, worker):
    make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    assert (claimed["claim"]["attempt"], claimed["claim"]["last_reason"]) == (1, "")
    fail(worker, claimed, reason="exit-code", reason_detail="3")
    again = claim(worker)
    assert again is not None
    assert again["claim"]["attempt"] == 2
    assert (again["claim"]["last_reason"], again["claim"]["last_reason_detail"]) == (
        "exit-code", "3",
    )  # fmt: skip
    assert again["dataset"]["last_reason"] == "exit-code"


def test_a_release_records_its_reason_and_spends_nothing(project, worker):
    dataset = make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    body = {"note": "deadline", "reason": "time-limit", "reason_detail": "wall-time"}
    answer = worker.post(f"/api/claims/{claimed['claim']['id']}/release/", body, format="json")
    assert answer.status_code == 200, answer.content
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.last_reason) == ("pending", 0, "time-limit")
    assert dataset.needs_seconds is None  # the task ran out of time, not the dataset
    status = Status.objects.get()
    assert (status.reason, status.reason_detail) == ("time-limit", "wall-time")
    # Without a reason: cancelled; an unknown one is refused.
    claimed = claim(worker)
    assert claimed is not None
    bad = worker.post(
        f"/api/claims/{claimed['claim']['id']}/release/", {"reason": "x"}, format="json"
    )
    assert bad.status_code == 400
    worker.post(f"/api/claims/{claimed['claim']['id']}/release/", {}, format="json")
    dataset.refresh_from_db()
    assert (dataset.state, dataset.last_reason) == ("pending", "cancelled")


def out_of_memory(api: APIClient, memory: int | None, **announce: Any) -> None:
    claimed = claim(api, **announce)
    assert claimed is not None
    extra = {} if memory is None else {"memory": memory}
    assert fail(api, claimed, reason="out-of-memory", **extra).status_code == 201


def test_an_out_of_memory_fail_raises_the_memory_the_dataset_needs(project, worker):
    dataset = make_dataset(project, name="d")
    out_of_memory(worker, None)  # no memory said: nothing learnt
    dataset.refresh_from_db()
    assert dataset.needs_memory is None
    out_of_memory(worker, 4 * GIB)
    dataset.refresh_from_db()
    assert (dataset.needs_memory, dataset.state) == (4 * GIB + 1, "pending")
    # Claims announcing nothing, or as much as the run had, get nothing.
    assert claim(worker) is None
    assert claim(worker, memory=4 * GIB) is None
    taken = claim(worker, memory=8 * GIB)
    assert taken is not None and taken["claim"]["attempt"] == 3
    assert taken["dataset"]["needs_memory"] == 4 * GIB + 1
    finish(worker, taken)
    dataset.refresh_from_db()
    assert (dataset.state, dataset.needs_memory, dataset.last_reason) == ("completed", None, "")


def finish(api: APIClient, claimed: dict[str, Any]) -> None:
    ids = {"dataset": claimed["dataset"]["id"], "claim": claimed["claim"]["id"]}
    body = [{**ids, "stage": s, "state": t} for s, t in ((1, 2), (2, 1), (2, 2), (3, 1), (3, 2))]
    assert api.post("/api/statuses/batch/", body, format="json").status_code == 201


def test_a_time_limit_fail_raises_the_time_the_dataset_needs(project, worker):
    dataset = make_dataset(project, name="d")
    claimed = claim(worker)
    assert claimed is not None
    fail(worker, claimed, reason="time-limit", seconds=3600)
    dataset.refresh_from_db()
    assert dataset.needs_seconds == 3601
    assert claim(worker, seconds=3600, memory=GIB) is None
    assert claim(worker, seconds=7200) is not None


def needy(project: Any, count: int = 3) -> list[Dataset]:
    """Datasets needing nothing, 8 GiB, and 8 GiB with two hours."""
    plain = make_dataset(project, name="plain", priority=0)
    big = make_dataset(project, name="big", priority=5, needs_memory=8 * GIB)
    slow = make_dataset(project, name="slow", priority=9, needs_memory=8 * GIB, needs_seconds=7200)
    return [plain, big, slow][:count]


@pytest.mark.parametrize(
    ("announce", "expected"),
    [
        ({}, ["plain"]),
        ({"memory": 4 * GIB}, ["plain"]),
        ({"memory": 8 * GIB}, ["big", "plain"]),
        ({"memory": 16 * GIB, "seconds": 3600}, ["big", "plain"]),
        ({"memory": 16 * GIB, "seconds": 7200}, ["slow", "big", "plain"]),
    ],
)
def test_the_claim_filter_in_every_claim_path(project, worker, announce, expected):
    """claim_next (one at a time) and claim_many (count) hand out the same datasets."""
    needy(project)
    paths: dict[str, list[str]] = {}
    with_ids = []
    for path in ("one", "many"):
        taken = []
        for _ in range(3):
            if path == "one" and (claimed := claim(worker, **announce)):
                taken.append(claimed["dataset"]["name"])
                with_ids.append(claimed)
        if path == "many":
            answer = claim(worker, count=5, **announce)
            assert answer is not None
            taken = [c["dataset"]["name"] for c in answer["claims"]]
            with_ids.extend(answer["claims"])
        paths[path] = taken
        for claimed in with_ids:  # give them back for the next path
            worker.post(f"/api/claims/{claimed['claim']['id']}/release/", {}, format="json")
        with_ids.clear()
    assert paths == {"one": expected, "many": expected}


@pytest.mark.parametrize("form", ["status", "batch", "batch with count"])
def test_a_status_s_next_claims_through_the_filter(project, worker, form):
    needy(project, 2)
    first = claim(worker, memory=8 * GIB)  # big (priority 5) first
    assert first is not None and first["dataset"]["name"] == "big"
    ids = {"dataset": first["dataset"]["id"], "claim": first["claim"]["id"]}
    done = [{**ids, "stage": s, "state": t} for s, t in ((1, 2), (2, 1), (2, 2), (3, 1))]
    worker.post("/api/statuses/batch/", done, format="json")
    last = {**ids, "stage": 3, "state": 2}
    Dataset.objects.filter(name="plain").update(needs_memory=16 * GIB)
    make_dataset(project, name="small", needs_memory=2 * GIB)
    nxt = {"memory": 8 * GIB}
    if form == "status":
        answer = worker.post("/api/statuses/", {**last, "next": nxt}, format="json").json()
        names = [answer["next"]["dataset"]["name"]]
    else:
        nxt = {**nxt, "count": 4} if form == "batch with count" else nxt
        body = {"statuses": [last], "next": nxt}
        answer = worker.post("/api/statuses/batch/", body, format="json").json()
        shown = answer.get("claims") or [answer["next"]]
        names = [c["dataset"]["name"] for c in shown]
    assert names == ["small"]


def test_the_sweeper_records_lost_lease_and_gives_the_attempt_back(project, worker):
    dataset = make_dataset(project, name="d")
    claimed = claim(worker, lease_seconds=5)
    assert claimed is not None
    claims.reclaim_expired(timezone.now() + datetime.timedelta(seconds=6))
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.last_reason) == ("pending", 0, "lost-lease")
    assert Status.objects.get().reason == "lost-lease"
    assert uuid.UUID(claimed["claim"]["id"])


def test_the_dataset_list_filters_by_reason(project, worker):
    for name, reason in (("a", "out-of-memory"), ("b", "exit-code"), ("c", "out-of-memory")):
        make_dataset(project, name=name, state="failed", last_reason=reason)
    answer = worker.get("/api/datasets/?project=scans&reason=out-of-memory")
    assert [d["name"] for d in answer.json()["results"]] == ["a", "c"]
    bad = worker.get("/api/datasets/?project=scans&reason=oom")
    assert bad.status_code == 400
    assert (
        bad.json()["detail"]
        == f"Invalid input. reason: Unknown reason 'oom'; use one of {CHOICES}."
    )


def test_failures_group_by_reason_then_note_in_stats_overview_and_page(project, worker, client):
    from crunch.services.overview import project_overview
    from crunch.services.pages import failure_groups
    from crunch.services.stats import project_stats

    project.is_public = True
    project.save()
    for n, (reason, note) in enumerate([
        ("out-of-memory", "Killed"), ("out-of-memory", "Killed"), ("exit-code", "Killed"),
        ("input-missing", "empty folder"),
    ]):  # fmt: skip
        make_dataset(project, name=f"f{n}", state="failed", last_reason=reason, note=note)
    make_dataset(project, name="big", last_reason="out-of-memory", note="Killed",
                 needs_memory=8 * GIB + 1, not_before=timezone.now())  # fmt: skip
    groups = [(g.reason, g.note, g.count, len(g.examples)) for g in failure_groups(project)]
    assert groups == [
        ("out-of-memory", "Killed", 3, 3), ("exit-code", "Killed", 1, 1),
        ("input-missing", "empty folder", 1, 1),
    ]  # fmt: skip
    assert project_stats(project).as_dict()["failures_by_reason"] == {
        "out-of-memory": 3, "exit-code": 1, "input-missing": 1,
    }  # fmt: skip
    overview = project_overview(project)
    assert [(f["reason"], f["count"]) for f in overview["failures"]] == [
        ("out-of-memory", 3), ("exit-code", 1), ("input-missing", 1),
    ]  # fmt: skip
    assert overview["needs"] == [
        {"reason": "out-of-memory", "memory": 8 * GIB + 1, "seconds": None, "count": 1}
    ]
    page = client.get("/projects/scans/").content.decode()
    assert '<code class="reason">exit-code</code>' in page
    filtered = client.get("/projects/scans/?reason=input-missing").content.decode()
    assert "Only datasets whose last failure was <code>input-missing</code>." in filtered
    table = filtered.split('<div id="datasets"')[1]
    assert ">f3</a>" in table and ">f0</a>" not in table
    why = worker.get("/api/datasets/scans:big/why/").json()
    assert why["reason"] == (
        "Pending after failing 0 of 3 attempt(s) with out-of-memory; it goes only to a claim "
        'that announces at least 8.0\xa0GB (8589934593 bytes). The last note: "Killed".'
    )
