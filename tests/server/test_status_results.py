"""Results with the Upload Success: stored in the status's transaction, on every path a status
takes (alone, a run's list batch, the object batch of many datasets), refused in one line
naming the dataset and the key, and in a constant number of queries for a whole batch."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from crunch.models import Dataset, ResultKey, Status
from crunch.services import claims
from crunch.services.results import values_of
from tests.factories import bulk_datasets, make_project, make_user
from tests.server.test_query_counts import at_most_queries
from tests.server.test_status_batches import api_of, batch_of, claim, status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker() -> APIClient:
    project = make_project(name="Q")
    bulk_datasets(project, 200)
    _, token = make_user("node", role="worker", projects=[project])
    claims.reclaim_expired()
    return api_of(token)


def values(i: int) -> dict[str, Any]:
    return {
        "words": i, "score": i / 100, "site": "north" if i % 2 else "south",
        "where": {"lat": i / 10, "lon": -i / 10}, "day": "2024-05-01",
    }  # fmt: skip


def upload_success(claim_id: str, dataset: int, key: str, results: Any) -> dict[str, Any]:
    return {**status(claim_id, dataset, 3, 2, key), "results": results}


def finish_alone(api: APIClient, claim_id: str, dataset: int, results: Any, tag: str = "") -> Any:
    for n, (stage, state) in enumerate([(1, 2), (2, 1), (2, 2), (3, 1)]):
        r = api.post("/api/statuses/", status(claim_id, dataset, stage, state, f"{tag}{n}"),
                     format="json")  # fmt: skip
        assert r.status_code == 201, r.content
    return api.post("/api/statuses/", upload_success(claim_id, dataset, f"{tag}u", results),
                    format="json")  # fmt: skip


def test_an_upload_success_stores_its_results(worker):
    ((claim_id, dataset),) = claim(worker, 1)
    r = finish_alone(worker, claim_id, dataset, values(7))
    assert r.status_code == 201, r.content
    assert "results" not in r.json()  # written, never shown with the status
    stored = values_of(Dataset.objects.get(pk=dataset))
    assert stored["words"] == 7 and stored["where"] == (0.7, -0.7)
    assert str(stored["day"]) == "2024-05-01"
    assert Dataset.objects.get(pk=dataset).state == "completed"


def test_a_retried_run_replaces_its_datasets_results(worker):
    ((claim_id, dataset),) = claim(worker, 1)
    assert finish_alone(worker, claim_id, dataset, values(7)).status_code == 201
    Dataset.objects.filter(pk=dataset).update(state="pending")
    slug = Dataset.objects.get(pk=dataset).slug
    r = worker.post(f"/api/datasets/{slug}/claim/", {"holder": "n"}, format="json")
    assert r.status_code in (200, 201), r.content
    again = r.json()["claim"]["id"]
    assert finish_alone(worker, again, dataset, {"words": 8}, tag="b").status_code == 201
    assert values_of(Dataset.objects.get(pk=dataset)) == {"words": 8}


def test_a_kind_change_refuses_the_status_in_one_line_and_the_run_goes_on(worker):
    (first, second) = claim(worker, 2)
    assert finish_alone(worker, *first, values(1)).status_code == 201
    r = finish_alone(worker, *second, {**values(2), "score": "high"})
    assert r.status_code == 400
    slug = Dataset.objects.get(pk=second[1]).slug
    assert r.json()["detail"] == (
        f"Results of dataset {slug!r}: 'score' is a text, but the project's 'score' is a "
        "float (fixed by its first value): report the same kind, or use another key."
    )
    assert r.json()["code"] == "invalid_results"
    dataset = Dataset.objects.get(pk=second[1])
    assert dataset.state == "running" and values_of(dataset) == {}
    assert not Status.objects.filter(dataset=dataset, stage=3, state=2).exists()
    # The client then says why it failed: reason results, not retried.
    fail = {**status(*second, 3, 3, "f"), "note": "refused", "reason": "results"}
    assert worker.post("/api/statuses/", fail, format="json").status_code == 201
    dataset.refresh_from_db()
    assert (dataset.state, dataset.last_reason) == ("failed", "results")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"stage": 2, "state": 2, "results": {"a": 1}},
         "Invalid input. results: Only an Upload Success has results."),
        ({"results": [1, 2]},
         'Invalid input. results: Expected a dictionary of items but got type "list".'),
        ({"results": {"a b": 1}},
         "Results of dataset '{slug}': the key 'a b' is not an identifier (a letter or '_', "
         "then letters, digits or '_', at most 64 characters)."),
        ({"results": {"x": {"y": {"z": 1}}}},
         "Results of dataset '{slug}': 'x' is an object; only {{\"lat\": .., \"lon\": ..}} may "
         "be nested."),
    ],
)  # fmt: skip
def test_results_that_are_no_upload_successs_object_are_refused(worker, body, detail):
    ((claim_id, dataset),) = claim(worker, 1)
    sent = {**status(claim_id, dataset, 3, 2, "k"), **body}
    r = worker.post("/api/statuses/", sent, format="json")
    assert r.status_code == 400
    slug = Dataset.objects.get(pk=dataset).slug
    assert r.json()["detail"] == detail.format(slug=slug)


def test_a_runs_list_batch_stores_its_results_or_refuses_its_upload_success_alone(worker):
    (first, second) = claim(worker, 2)
    good = [*batch_of([first], [(1, 2), (2, 1), (2, 2), (3, 1)], "g"),
            upload_success(*first, "gu", values(3))]  # fmt: skip
    r = worker.post("/api/statuses/batch/", good, format="json")
    assert r.status_code == 201, r.content
    assert values_of(Dataset.objects.get(pk=first[1]))["words"] == 3
    bad = [
        *batch_of([second], [(1, 2), (2, 1)], "b"),
        upload_success(*second, "bu", {"words": "x"}),
    ]
    r = worker.post("/api/statuses/batch/", bad, format="json")
    assert r.status_code == 400 and "'words' is a text" in r.json()["detail"]
    # The statuses before the refused one are recorded, as when posted alone.
    assert Status.objects.filter(dataset_id=second[1]).count() == 3


@pytest.mark.parametrize("size", [1, 16, 64])
def test_a_batchs_results_cost_a_constant_number_of_queries(worker, size):
    held = claim(worker, size)
    ends = [(2, 2), (3, 1)]

    def ending(tag: str, results: Any) -> dict[str, Any]:
        statuses = []
        for i, (claim_id, dataset) in enumerate(held):
            statuses += batch_of([(claim_id, dataset)], ends, f"{tag}{i}-")
            statuses.append(upload_success(claim_id, dataset, f"{tag}{i}u", results(i)))
        return {"statuses": statuses, "next": {"holder": "n", "count": size, "start": {}}}

    worker.post("/api/statuses/batch/", {"statuses": batch_of(held, [(1, 2), (2, 1)], "a")},
                format="json")  # fmt: skip
    # The first results of the project: its keys and its results version are made too.
    with at_most_queries(7 + 9):
        r = worker.post("/api/statuses/batch/", ending("b", values), format="json")
    assert [x["code"] for x in r.json()["results"]] == [201] * 3 * size
    assert ResultKey.objects.count() == 5
    for i, (_, dataset) in enumerate(held):
        assert values_of(Dataset.objects.get(pk=dataset))["words"] == i
    # The next round, with known keys: four more than without results, whatever the size.
    held = [(c["claim"]["id"], c["dataset"]["id"]) for c in r.json()["claims"]]
    worker.post("/api/statuses/batch/", {"statuses": batch_of(held, [(1, 2), (2, 1)], "c")},
                format="json")  # fmt: skip
    with at_most_queries(7 + 4):  # the schema read, one DELETE, one INSERT, the version
        r = worker.post("/api/statuses/batch/", ending("d", values), format="json")
    assert [x["code"] for x in r.json()["results"]] == [201] * 3 * size


def test_a_refused_results_object_refuses_only_its_datasets_upload_success(worker):
    held = claim(worker, 3)
    worker.post("/api/statuses/batch/", {"statuses": batch_of(held, [(1, 2), (2, 1)], "a")},
                format="json")  # fmt: skip
    bodies = [values(0), {"words": 1.5}, values(2)]  # the second's words is no integer
    statuses = []
    for i, (claim_id, dataset) in enumerate(held):
        statuses += batch_of([(claim_id, dataset)], [(2, 2), (3, 1)], f"e{i}-")
        statuses.append(upload_success(claim_id, dataset, f"e{i}u", bodies[i]))
    r = worker.post("/api/statuses/batch/", {"statuses": statuses}, format="json")
    assert r.status_code == 200, r.content
    codes = [x["code"] for x in r.json()["results"]]
    assert codes == [201, 201, 201, 201, 201, 400, 201, 201, 201]
    slug = Dataset.objects.get(pk=held[1][1]).slug
    assert r.json()["results"][5]["detail"] == (
        f"Results of dataset {slug!r}: 'words' is a float, but the project's 'words' is an "
        "integer (fixed by its first value): report the same kind, or use another key."
    )
    states = [Dataset.objects.get(pk=dataset).state for _, dataset in held]
    assert states == ["completed", "running", "completed"]
    assert values_of(Dataset.objects.get(pk=held[2][1]))["words"] == 2


def test_two_datasets_of_one_batch_bringing_a_new_key_with_two_kinds(worker):
    held = claim(worker, 2)
    worker.post("/api/statuses/batch/", {"statuses": batch_of(held, [(1, 2), (2, 1)], "a")},
                format="json")  # fmt: skip
    statuses = [
        *batch_of(held[:1], [(2, 2), (3, 1)], "x"), upload_success(*held[0], "xu", {"k": "text"}),
        *batch_of(held[1:], [(2, 2), (3, 1)], "y"), upload_success(*held[1], "yu", {"k": 1}),
    ]  # fmt: skip
    r = worker.post("/api/statuses/batch/", {"statuses": statuses}, format="json")
    assert [x["code"] for x in r.json()["results"]] == [201, 201, 201, 201, 201, 400]
    assert "'k' is an integer, but the project's 'k' is a text" in r.json()["results"][5]["detail"]
