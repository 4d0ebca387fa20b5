"""A paused project hands out nothing, and a maintainer releases a running dataset: the API,
``why``, the stats and the project page."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from crunch.choices import DatasetState
from crunch.models import Dataset, Project, Status, WorkflowChange
from crunch.services import claims
from tests.clientkit import SIX
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db

PAUSED = (
    "Project 'p' is paused: it hands out no dataset until a maintainer runs "
    "'crunch project resume p'."
)


def client(token: str | None) -> APIClient:
    api = APIClient()
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


@pytest.fixture
def project() -> Project:
    return make_project(name="P", paused=True)


@pytest.fixture
def worker(project: Project) -> APIClient:
    return client(make_user("node", role="worker", projects=[project])[1])


@pytest.fixture
def maintainer(project: Project) -> APIClient:
    return client(make_user("keeper", role="maintainer", projects=[project])[1])


def token_of(role: str | None, project: Project) -> str | None:
    """A token of ``role`` on ``project``; None: no role at all; "anonymous": no token."""
    if role == "anonymous":
        return None
    if role is None:
        return make_user("nobody")[1]
    return make_user(f"u-{role}", role=role, projects=[project])[1]


def untouched(dataset: Dataset) -> None:
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.claim_id) == ("pending", 0, None)
    assert not Status.objects.filter(dataset=dataset).exists()


def test_a_paused_project_hands_out_nothing(project: Project, worker: APIClient) -> None:
    dataset = make_dataset(project, name="d")
    other = make_dataset(make_project(name="Other"), name="o")
    everywhere = client(make_user("site", role="worker")[1])

    r = worker.post("/api/projects/p/next/", {"holder": "n"}, format="json")
    assert (r.status_code, r.json()) == (409, {"detail": PAUSED, "code": "project_paused"})
    r = worker.post("/api/datasets/p:d/claim/", {"holder": "n"}, format="json")
    assert (r.status_code, r.json()["detail"]) == (409, PAUSED)
    r = worker.post("/api/next/", {"holder": "n"}, format="json")
    assert r.status_code == 204  # the worker's only project is paused
    # A 0.1 client claims with its Setup Start: refused too.
    r = worker.post("/api/statuses/", {"dataset": "p:d", "stage": 1, "state": 1}, format="json")
    assert (r.status_code, r.json()["detail"]) == (409, PAUSED)
    untouched(dataset)

    # The queue of every project skips the paused one's datasets, in the same query.
    r = everywhere.post("/api/next/", {"holder": "n"}, format="json")
    assert (r.status_code, r.json()["dataset"]["slug"]) == (200, other.slug)
    r = everywhere.post("/api/next/", {"holder": "n"}, format="json")
    assert r.status_code == 204
    untouched(dataset)


def test_a_running_dataset_finishes_and_claims_no_next_once_paused(worker: APIClient) -> None:
    project = Project.objects.get(slug="p")
    Project.objects.filter(pk=project.pk).update(paused=False)
    make_dataset(project, name="a")
    waiting = make_dataset(project, name="b")
    r = worker.post("/api/projects/p/next/", {"holder": "n"}, format="json")
    assert r.status_code == 200
    claim, dataset = r.json()["claim"]["id"], r.json()["dataset"]["id"]
    Project.objects.filter(pk=project.pk).update(paused=True)
    for n, (stage, state) in enumerate(SIX):
        body = {"dataset": dataset, "stage": stage, "state": state, "claim": claim, "key": f"{n}"}
        if n == len(SIX) - 1:
            body["next"] = {"holder": "n", "project": "p"}
        r = worker.post("/api/statuses/", body, format="json")
        assert r.status_code == 201, r.content
    assert r.json()["dataset_state"] == "completed"
    assert r.json()["next"] is None  # the Upload Success claims nothing of a paused project
    untouched(waiting)

    Project.objects.filter(pk=project.pk).update(paused=False)  # resumed
    r = worker.post("/api/projects/p/next/", {"holder": "n"}, format="json")
    assert (r.status_code, r.json()["dataset"]["slug"]) == (200, "p:b")


def test_pause_and_resume_through_the_api(project: Project, maintainer: APIClient) -> None:
    assert maintainer.get("/api/projects/p/").json()["paused"] is True
    r = maintainer.patch("/api/projects/p/", {"paused": False}, format="json")
    assert (r.status_code, r.json()["paused"]) == (200, False)
    project.refresh_from_db()
    assert project.paused is False


@pytest.mark.parametrize(
    ("role", "code"),
    [("maintainer", 200), ("worker", 403), ("viewer", 403), (None, 404), ("anonymous", 401)],
)
def test_who_may_pause(project: Project, role: str | None, code: int) -> None:
    r = client(token_of(role, project)).patch("/api/projects/p/", {"paused": False}, format="json")
    assert r.status_code == code, r.content
    project.refresh_from_db()
    assert project.paused is (code != 200)


def test_a_workflow_change_is_recorded(project: Project, maintainer: APIClient) -> None:
    r = maintainer.patch(
        "/api/projects/p/",
        {"workflow": "echo new\n", "max_attempts": 5, "retry_delay": 9, "is_public": True},
        format="json",
    )
    assert r.status_code == 200, r.content
    change = WorkflowChange.objects.get(project=project)
    assert (change.previous, change.user.username) == ("echo hello > hello.txt\n", "keeper")
    r = maintainer.patch("/api/projects/p/", {"max_attempts": 0}, format="json")
    assert r.status_code == 200  # 0 is a PositiveIntegerField's value; the client refuses it
    r = maintainer.patch("/api/projects/p/", {"retry_delay": -1}, format="json")
    assert r.status_code == 400
    assert r.json()["detail"].startswith("Invalid input. retry_delay:")


def test_why_stats_and_page_say_paused(project: Project, maintainer: APIClient) -> None:
    make_dataset(project, name="d")
    why = maintainer.get("/api/datasets/p:d/why/").json()
    assert why["reason"] == ("Project 'p' is paused: it hands out no dataset until it is resumed.")
    assert why["command"] == "crunch project resume p"
    assert maintainer.get("/api/projects/p/overview/").json()["paused"] is True
    assert maintainer.get("/api/projects/p/stats/").json()["paused"] is True
    keeper = get_user_model().objects.get(username="keeper")
    page = APIClient()
    page.force_login(keeper)
    html = page.get("/projects/p/").content.decode()
    assert "This project hands out no dataset" in html
    assert "crunch project resume p" in html
    listing = page.get("/").content.decode()
    assert '<span class="tag">paused</span>' in listing


def running(project: Project, name: str = "r") -> tuple[Dataset, uuid.UUID]:
    """A dataset claimed before its project was paused (if it is)."""
    dataset = make_dataset(project, name=name)
    paused = project.paused
    project.paused = False
    claim = claims.claim_dataset(dataset, holder="node@host")
    project.paused = paused
    return Dataset.objects.get(pk=dataset.pk), claim.id


@pytest.mark.parametrize(
    ("role", "code"),
    [("maintainer", 200), ("worker", 403), ("viewer", 403), (None, 404), ("anonymous", 401)],
)
def test_who_may_release(role: str | None, code: int) -> None:
    project = make_project(name="P")
    dataset, _claim_id = running(project)
    r = client(token_of(role, project)).post("/api/datasets/p:r/release/")
    assert r.status_code == code, r.content
    dataset.refresh_from_db()
    assert dataset.state == ("pending" if code == 200 else "running")


def test_release_returns_a_running_dataset_to_pending(maintainer: APIClient) -> None:
    project = Project.objects.get(slug="p")
    dataset, claim_id = running(project)
    r = maintainer.post("/api/datasets/p:r/release/")
    assert r.status_code == 200, r.content
    assert (r.json()["state"], r.json()["attempts"], r.json()["note"]) == (
        "pending", 0, "Released by keeper.",
    )  # fmt: skip
    assert str(claim_id) not in r.content.decode()  # a claim id is the holder's secret
    dataset.refresh_from_db()
    assert (dataset.state, dataset.claim_id, dataset.claim_holder) == ("pending", None, "")
    last = Status.objects.filter(dataset=dataset).latest("id")
    assert (last.state, last.note) == (3, "Released by keeper.")
    # The client that held it learns it lost the claim at its next heartbeat.
    with pytest.raises(claims.LeaseExpired):
        claims.renew_lease(claim_id)

    r = maintainer.post("/api/datasets/p:r/release/")
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "Dataset 'p:r' is pending, not running: there is no claim to release.",
    )
    r = maintainer.post("/api/datasets/p:nope/release/")
    assert r.status_code == 404


def test_release_of_an_expired_lease(maintainer: APIClient) -> None:
    project = Project.objects.get(slug="p")
    dataset, _ = running(project)
    Dataset.objects.filter(pk=dataset.pk).update(lease_expires="2000-01-01T00:00:00Z")
    r = maintainer.post("/api/datasets/p:r/release/")
    assert (r.status_code, r.json()["state"]) == (200, DatasetState.PENDING)
    # Released while its project is paused: it waits with the others.
    untouched_claim = maintainer.post("/api/projects/p/next/", {"holder": "n"}, format="json")
    assert untouched_claim.status_code == 409
