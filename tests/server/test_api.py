"""The REST API over real HTTP: a live server, requests, token authentication."""

from __future__ import annotations

import uuid

import pytest
import requests

from crunch.choices import DatasetState
from crunch.models import Attribute, Dataset, Item, Project, Status
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    """requests against the live server, with a token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base.rstrip("/") + "/api/"
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str, **params: object) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=10)

    def post(self, path: str, json: object = None, **kwargs: object) -> requests.Response:
        return self.session.post(self.base + path, json=json, timeout=10, **kwargs)


@pytest.fixture
def http(live_server, client_user):
    return Api(live_server.url, client_user[1])


@pytest.fixture
def maintainer(live_server, db):
    """A site-wide maintainer: edits projects and datasets, retries."""
    return Api(live_server.url, make_user("keeper", role="maintainer")[1])


@pytest.fixture
def anonymous(live_server):
    return Api(live_server.url, None)


def run_statuses(http, dataset, claim, states=((1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2))):
    for stage, state in states:
        r = http.post(
            "statuses/", {"dataset": dataset.pk, "stage": stage, "state": state, "claim": claim}
        )
        assert r.status_code == 201, r.text


def test_claim_returns_dataset_project_and_claim_then_six_statuses_complete_it(http):
    dataset = make_dataset(make_project(name="Alpha"), name="One")
    r = http.post("next/", {"holder": "me@node1"})
    assert r.status_code == 200
    body = r.json()
    assert body["dataset"]["slug"] == "alpha:one"
    assert body["dataset"]["base_file_path"] == "crunch/alpha/one"
    assert body["project"]["workflow"] == "echo hello > hello.txt\n"
    assert body["claim"]["holder"] == "me@node1"
    run_statuses(http, dataset, body["claim"]["id"])
    dataset.refresh_from_db()
    assert dataset.state == DatasetState.COMPLETED
    assert list(Status.objects.filter(dataset=dataset).values_list("stage", "state")) == [
        (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)
    ]  # fmt: skip
    assert http.post("next/").status_code == 204


def test_project_next_claims_only_that_project_by_priority(http):
    other = make_project(name="Other")
    make_dataset(other, name="Elsewhere")
    project = make_project(name="Mine")
    make_dataset(project, name="Low")
    make_dataset(project, name="High", priority=5)
    first = http.post("projects/mine/next/").json()["dataset"]["slug"]
    second = http.post("projects/mine/next/").json()["dataset"]["slug"]
    assert [first, second] == ["mine:high", "mine:low"]
    assert http.post("projects/mine/next/").status_code == 204
    assert http.post("projects/nope/next/").status_code == 404


def test_legacy_get_next_only_peeks(http):
    make_dataset(make_project(name="Alpha"), name="One")
    assert http.get("next/").json() == {"project": "alpha", "dataset": "alpha:one"}
    assert http.get("projects/alpha/next/").json() == {"project": "alpha", "dataset": "alpha:one"}
    assert Dataset.objects.get().state == DatasetState.PENDING


def test_status_for_a_claim_not_held_is_refused(http):
    dataset = make_dataset()
    r = http.post(
        "statuses/", {"dataset": dataset.pk, "stage": 1, "state": 1, "claim": str(uuid.uuid4())}
    )
    assert r.status_code == 409
    assert "no longer held" in r.json()["detail"]
    assert not Status.objects.exists()


def test_status_after_release_is_refused(http):
    dataset = make_dataset()
    claim = http.post("next/").json()["claim"]["id"]
    r = http.post(f"claims/{claim}/release/", {"note": "stopped by SIGTERM"})
    assert r.status_code == 200 and r.json()["state"] == "pending"
    r = http.post("statuses/", {"dataset": dataset.pk, "stage": 1, "state": 2, "claim": claim})
    assert r.status_code == 409
    assert http.post(f"claims/{claim}/release/").status_code == 409


def test_renew_extends_the_lease_and_refuses_a_lost_claim(http):
    make_dataset()
    claim = http.post("next/", {"lease_seconds": 30}).json()["claim"]
    r = http.post(f"claims/{claim['id']}/renew/", {"lease_seconds": 600})
    assert r.status_code == 200
    assert r.json()["lease_expires"] > claim["lease_expires"]
    assert http.post(f"claims/{uuid.uuid4()}/renew/").status_code == 409
    assert http.post("claims/not-a-uuid/renew/").status_code == 404


def test_a_retried_status_post_is_recorded_once(http):
    dataset = make_dataset()
    claim = http.post("next/").json()["claim"]["id"]
    post = {"dataset": dataset.pk, "stage": 1, "state": 1, "claim": claim, "key": "k-1"}
    first, second = http.post("statuses/", post), http.post("statuses/", post)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Status.objects.count() == 1


def test_fail_returns_to_pending_while_attempts_remain_then_fails(http):
    dataset = make_dataset(make_project(name="P", max_attempts=2))
    for expected in ("pending", "failed"):
        claim = http.post("next/").json()["claim"]["id"]
        r = http.post(
            "statuses/",
            {"dataset": dataset.pk, "stage": 2, "state": 3, "claim": claim, "note": "exit 1"},
        )
        assert r.status_code == 201 and r.json()["dataset_state"] == expected
        dataset.refresh_from_db()
        assert (dataset.state, dataset.note) == (expected, "exit 1")
    assert http.post("next/").status_code == 204


def test_retry_a_dataset_and_all_failed_of_a_project(maintainer):
    http = maintainer
    project = make_project(name="P")
    one = make_dataset(project, name="one", state="failed", attempts=3)
    make_dataset(project, name="two", state="failed")
    make_dataset(project, name="three", state="completed")
    r = http.post(f"datasets/{one.slug}/retry/")
    assert r.status_code == 200 and r.json()["state"] == "pending" and r.json()["attempts"] == 0
    assert http.post(f"datasets/{one.slug}/retry/").status_code == 409
    assert http.post("projects/p/retry/").json() == {"retried": 1}
    assert Dataset.objects.pending().count() == 2


def test_stats(http):
    project = make_project(name="P")
    for state in ("pending", "pending", "running", "completed", "failed"):
        make_dataset(project, name=state, state=state)
    stats = http.get("projects/p/stats/").json()
    assert {k: stats[k] for k in ("pending", "running", "completed", "failed", "total")} == {
        "pending": 2, "running": 1, "completed": 1, "failed": 1, "total": 5
    }  # fmt: skip


def test_claim_a_named_dataset_and_conflict(http):
    dataset = make_dataset(make_project(name="P"), name="D")
    r = http.post("datasets/p:d/claim/", {"holder": "a@host"})
    assert r.status_code == 200 and r.json()["claim"]["holder"] == "a@host"
    r = http.post("datasets/p:d/claim/", {"holder": "b@host"})
    assert r.status_code == 409
    assert r.json()["detail"] == "Dataset 'p:d' is claimed by 'a@host'."
    assert http.post("datasets/p:nope/claim/").status_code == 404
    dataset.refresh_from_db()
    assert dataset.attempts == 1


def test_legacy_form_encoded_creation_and_statuses_without_claim(maintainer, http, client_user):
    """django-crunch 0.1 clients post form data and send no claim."""
    r = maintainer.session.post(
        maintainer.base + "projects/",
        data={"name": "Legacy", "description": "d", "details": "# x", "workflow": "true"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["slug"] == "legacy"
    r = maintainer.session.post(
        maintainer.base + "datasets/",
        data={"parent": "legacy", "name": "DS 1", "description": "", "details": ""},
    )
    assert r.status_code == 201 and r.json()["slug"] == "legacy:ds-1"
    assert r.json()["base_file_path"] == "crunch/legacy/ds-1"
    dataset_id = r.json()["id"]
    for stage in (1, 2, 3):
        for state in (1, 2):
            r = http.session.post(
                http.base + "statuses/",
                data={"dataset": dataset_id, "stage": stage, "state": state, "hostname": "node7"},
            )
            assert r.status_code == 201, r.text
    assert Dataset.objects.get(pk=dataset_id).state == "completed"
    # Another legacy client (another host) cannot report on a dataset it does not hold.
    dataset = make_dataset(Project.objects.get(slug="legacy"), name="DS 2")
    http.session.post(
        http.base + "statuses/",
        data={"dataset": dataset.pk, "stage": 1, "state": 1, "hostname": "node7"},
    )
    r = http.session.post(
        http.base + "statuses/",
        data={"dataset": dataset.pk, "stage": 1, "state": 2, "hostname": "node8"},
    )
    assert r.status_code == 409
    assert r.json()["detail"] == "Dataset 'legacy:ds-2' is claimed by 'worker@node7'."


def test_items_and_typed_attributes(maintainer):
    http = maintainer
    make_dataset(make_project(name="P"), name="D")
    r = http.post("items/", {"parent": "p:d", "name": "Scan 1"})
    assert r.status_code == 201 and r.json()["slug"] == "p:d:scan-1"
    r = http.post("items/", {"parent": "p:d:scan-1", "name": "Slice"})
    assert r.status_code == 201 and r.json()["parent_item"] == "p:d:scan-1"
    cases = [
        ("char", {"value": "hello"}, "hello"),
        ("int", {"value": 42}, "42"),
        ("float", {"value": 2.5}, "2.5"),
        ("bool", {"value": True}, "True"),
        ("date", {"value": "2024-02-29"}, "2024-02-29"),
        ("datetime", {"value": "2024-02-29T10:00:00Z"}, "2024-02-29 10:00:00+00:00"),
        ("url", {"value": "https://example.org/x"}, "https://example.org/x"),
        ("filesize", {"value": 1536}, "1.5\xa0KB"),
        ("lat-long", {"latitude": -37.8, "longitude": 144.9}, "-37.8, 144.9"),
    ]
    for kind, value, display in cases:
        r = http.post(f"attributes/{kind}/", {"item": "p:d", "key": kind, **value})
        assert r.status_code == 201, (kind, r.text)
        assert r.json()["display"] == display
    assert http.post("attributes/int/", {"item": "p", "key": "n", "value": 1}).status_code == 201
    assert (
        http.post("attributes/int/", {"item": "p:d:scan-1", "key": "n", "value": 1}).status_code
        == 201
    )
    assert Attribute.objects.count() == 11
    r = http.post("attributes/int/", {"item": "p:d", "key": "n", "value": "many"})
    assert r.status_code == 400 and r.json()["value"] == ["A valid integer is required."]
    assert (
        http.post("attributes/colour/", {"item": "p:d", "key": "c", "value": "red"}).status_code
        == 404
    )
    r = http.post("attributes/char/", {"item": "p:nope", "key": "k", "value": "v"})
    assert r.status_code == 404 and r.json()["detail"] == (
        "No project, dataset or item has the slug 'p:nope'."
    )
    assert len(http.get("attributes/", item="p:d").json()["results"]) == 9
    assert Item.objects.count() == 2


def test_lists_are_paginated_and_filtered(http):
    a, b = make_project(name="A"), make_project(name="B")
    for i in range(3):
        make_dataset(a, name=f"a{i}")
    make_dataset(b, name="b0", state="failed")
    body = http.get("datasets/", project="a").json()
    assert body["count"] == 3 and {d["slug"] for d in body["results"]} == {"a:a0", "a:a1", "a:a2"}
    assert [d["slug"] for d in http.get("datasets/", state="failed").json()["results"]] == ["b:b0"]
    assert http.get("datasets/", state="bogus").status_code == 404
    assert http.get("projects/").json()["count"] == 2
    assert http.get("datasets/a:a1/").json()["parent"] == "a"
    assert http.get("projects/a/").json()["name"] == "A"


def test_statuses_list_by_dataset(http):
    dataset = make_dataset()
    claim = http.post("next/").json()["claim"]["id"]
    run_statuses(http, dataset, claim, states=((1, 1), (1, 2)))
    body = http.get("statuses/", dataset=dataset.slug).json()
    assert [(s["stage_name"], s["state_name"]) for s in body["results"]] == [
        ("Setup", "Start"),
        ("Setup", "Success"),
    ]


def test_no_token_and_bad_token_are_401(anonymous, live_server, db):
    make_dataset()
    r = anonymous.post("next/")
    assert r.status_code == 401
    assert r.json()["detail"] == "Authentication credentials were not provided."
    bad = Api(live_server.url, "0" * 40)
    r = bad.post("next/")
    assert r.status_code == 401 and r.json()["detail"] == "Invalid token."
    assert Dataset.objects.get().state == "pending"


def test_user_without_a_role_sees_and_claims_nothing(live_server, db):
    api = Api(live_server.url, make_user("visitor")[1])
    dataset = make_dataset()
    assert api.get("datasets/").json()["results"] == []
    assert api.post("next/").status_code == 204
    r = api.post("projects/", {"name": "x"})
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "You may not create projects; ask for a site-wide maintainer role."
    )
    r = api.post("statuses/", {"dataset": dataset.pk, "stage": 1, "state": 1})
    assert r.status_code == 404
    assert Dataset.objects.get().state == "pending" and not Status.objects.exists()


def test_unknown_slugs_are_404(http):
    assert http.get("projects/nope/").status_code == 404
    assert http.get("datasets/p:nope/").status_code == 404
    assert http.post("datasets/p:nope/retry/").status_code == 404
    r = http.post("statuses/", {"dataset": "p:nope", "stage": 1, "state": 1})
    assert r.status_code == 404 and r.json()["detail"] == "No dataset has the id or slug 'p:nope'."


def test_invalid_stage_or_state_is_400(http):
    dataset = make_dataset()
    r = http.post("statuses/", {"dataset": dataset.pk, "stage": 7, "state": "maybe"})
    assert r.status_code == 400
    body = r.json()
    assert body["stage"] == ["7 is not one of 1 (Setup), 2 (Workflow), 3 (Upload)."]
    assert body["state"] == ["'maybe' is not one of 1 (Start), 2 (Success), 3 (Fail)."]
    assert body["detail"].startswith("Invalid input. stage: ")
    r = http.post(
        "statuses/", {"dataset": dataset.pk, "stage": "workflow", "state": "fail", "claim": "x"}
    )
    assert r.status_code == 400 and "claim" in r.json()


def test_openapi_schema_describes_the_new_endpoints(http):
    r = http.get("schema/", format="json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/next/" in paths and "/api/claims/{claim_id}/renew/" in paths


def test_openapi_schema_describes_the_batched_calls(http):
    schema = http.get("schema/", format="json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]
    assert "/api/claims/renew/" in paths
    renew = paths["/api/claims/renew/"]["post"]
    assert "parameters" not in renew
    assert {"claims", "lease_seconds", "client"} <= set(components["RenewAll"]["properties"])
    assert set(components["RenewedAll"]["properties"]) == {"renewed", "lost"}
    batch = paths["/api/statuses/batch/"]["post"]
    assert set(batch["responses"]) == {"200", "201"}
    forms = components["StatusBatch"]["oneOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/Status"}} in forms
    assert {"statuses", "next"} == set(components["BatchRequest"]["properties"])
    assert {"count", "slots", "client"} <= set(components["ClaimRequest"]["properties"])
    assert "slot" in components["Status"]["properties"]
    answers = components["ClaimAnswer"]["oneOf"]
    assert {"$ref": "#/components/schemas/Claims"} in answers
