"""A project's container (issue 26): edited by maintainers only, refused when a container
runtime could read it as an option, kept with each workflow change, shown on the pages;
the image digest a run reports is shown on its dataset's page."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from crunch.access import grant
from crunch.choices import Role, Stage, State
from crunch.models import Project, Status, WorkflowChange
from crunch.services import claims, statuses
from tests.factories import make_dataset, make_project, make_user
from tests.server.admin_kit import errors, post_form, signed_in, staff

pytestmark = pytest.mark.django_db

IMAGE = "docker://rocker/r-ver:4.4"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def api_as(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


@pytest.fixture
def project() -> Project:
    return make_project(name="P", is_public=False)


def test_a_maintainer_sets_the_container_and_the_change_is_kept(project: Project) -> None:
    keeper, token = make_user("keeper", role="maintainer", projects=[project])
    api = api_as(token)

    r = api.patch("/api/projects/p/", {"container": IMAGE}, format="json")

    assert (r.status_code, r.json()["container"]) == (200, IMAGE)
    change = WorkflowChange.objects.get(project=project)
    assert (change.user, change.previous_container, change.container) == (keeper, "", IMAGE)
    assert change.sha256 == change.previous_sha256  # the workflow itself did not change
    assert api.patch("/api/projects/p/", {"container": IMAGE}, format="json").status_code == 200
    assert WorkflowChange.objects.count() == 1  # the same image again is no change
    assert api.get("/api/projects/p/").json()["container"] == IMAGE


def test_a_new_project_with_a_container_records_it() -> None:
    _, token = make_user("creator", role="maintainer")
    r = api_as(token).post("/api/projects/", {"name": "Boxed", "container": "/img/r.sif"})
    assert r.status_code == 201, r.content
    change = WorkflowChange.objects.get(project__slug="boxed")
    assert (change.previous_container, change.container) == ("", "/img/r.sif")


@pytest.mark.parametrize("role", ["worker", "viewer"])
def test_only_maintainers_change_the_container(project: Project, role: str) -> None:
    _, token = make_user(role, role=role, projects=[project])
    r = api_as(token).patch("/api/projects/p/", {"container": IMAGE}, format="json")
    assert r.status_code == 403
    project.refresh_from_db()
    assert project.container == ""
    assert not WorkflowChange.objects.exists()


def test_someone_without_a_role_on_a_private_project_gets_404(project: Project) -> None:
    other = make_project(name="Other")
    _, token = make_user("stranger", role="maintainer", projects=[other])
    r = api_as(token).patch("/api/projects/p/", {"container": IMAGE}, format="json")
    assert r.status_code == 404


REFUSED = [
    ("--privileged", "The container '--privileged' starts with '-', which a container runtime "
     "would read as an option: give an image name, a docker:// reference or a path."),
    ("-v/:/host", "The container '-v/:/host' starts with '-', which a container runtime would "
     "read as an option: give an image name, a docker:// reference or a path."),
    ("docker://a b", "The container 'docker://a b' holds ' ': give an image name or path "
     "without spaces or control characters."),
    (" docker://a", "The container ' docker://a' holds ' ': give an image name or path "
     "without spaces or control characters."),
    ("img\n--privileged", "The container 'img\\n--privileged' holds '\\n': give an image name "
     "or path without spaces or control characters."),
    ("img\t", "The container 'img\\t' holds '\\t': give an image name or path without spaces "
     "or control characters."),
    ("img\u202e", "The container 'img\\u202e' holds '\\u202e': give an image name or path "
     "without spaces or control characters."),
    ("x" * 501, "Ensure this field has no more than 500 characters."),
]  # fmt: skip


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=range(len(REFUSED)))
def test_a_container_a_runtime_could_misread_is_refused_in_one_line(
    project: Project, value: str, message: str
) -> None:
    _, token = make_user("keeper", role="maintainer", projects=[project])
    r = api_as(token).patch("/api/projects/p/", {"container": value}, format="json")
    assert r.status_code == 400
    assert r.json()["container"] == [message]
    assert r.json()["detail"] == f"Invalid input. container: {message}"
    project.refresh_from_db()
    assert project.container == ""


@pytest.mark.parametrize(
    "value", [IMAGE, "/images/r-4.4.sif", "rocker/r-ver@sha256:" + "a" * 64, "r-ver", "x" * 500]
)
def test_image_names_paths_and_digests_are_accepted(project: Project, value: str) -> None:
    _, token = make_user("keeper", role="maintainer", projects=[project])
    r = api_as(token).patch("/api/projects/p/", {"container": value}, format="json")
    assert (r.status_code, r.json()["container"]) == (200, value)


def test_the_admin_edits_the_container_refuses_an_option_and_keeps_the_change(
    project: Project,
) -> None:
    keeper = staff("keeper")
    grant(Role.MAINTAINER, project=project, user=keeper)
    client = signed_in(keeper)
    url = f"/admin/crunch/project/{project.pk}/change/"

    refused = post_form(client, url, {"container": "--privileged"})
    assert refused.status_code == 200
    assert "starts with &#x27;-&#x27;, which a container runtime would read" in errors(refused)
    project.refresh_from_db()
    assert project.container == ""

    saved = post_form(client, url, {"container": IMAGE})
    assert saved.status_code == 302
    project.refresh_from_db()
    assert project.container == IMAGE
    change = WorkflowChange.objects.get(project=project)
    assert (change.user, change.previous_container, change.container) == (keeper, "", IMAGE)
    page = client.get(url).content.decode()
    assert IMAGE in page  # the field and the change in its inline


def test_the_project_page_shows_the_container_and_its_changes(client: Any) -> None:
    project = make_project(name="Open", is_public=True)
    assert "container: none." in client.get("/projects/open/").content.decode()
    _, token = make_user("keeper", role="maintainer", projects=[project])
    api_as(token).patch("/api/projects/open/", {"container": IMAGE}, format="json")

    page = client.get("/projects/open/").content.decode()

    assert f"container: <code>{IMAGE}</code>." in page
    assert f"<td>none → <code>{IMAGE}</code></td>" in page
    assert "<td>unchanged</td>" in page


def test_a_runs_image_digest_is_recorded_and_shown_on_the_dataset_page(client: Any) -> None:
    project = make_project(name="Open", is_public=True, container=IMAGE)
    dataset = make_dataset(project, name="d")
    node, token = make_user("node", role="worker", projects=[project])
    api = api_as(token)
    claim = claims.claim_dataset(dataset, holder="node", user=node)
    page = client.get(f"/datasets/{dataset.slug}/").content.decode()
    assert "container image" not in page

    body = {
        "dataset": dataset.pk, "stage": 2, "state": 1, "claim": str(claim.id),
        "workflow_sha256": project.workflow_sha256, "image_digest": DIGEST,
    }  # fmt: skip
    r = api.post("/api/statuses/", body, format="json")

    assert (r.status_code, r.json()["image_digest"]) == (201, DIGEST)
    assert Status.objects.get(stage=Stage.WORKFLOW).image_digest == DIGEST
    page = client.get(f"/datasets/{dataset.slug}/").content.decode()
    assert "the project's current workflow" in page
    assert f'digest <code title="{DIGEST}">{DIGEST[:19]}</code>' in page


def test_a_batch_records_the_image_digest(project: Project) -> None:
    dataset = make_dataset(project, name="d")
    node, token = make_user("node", role="worker", projects=[project])
    claim = str(claims.claim_dataset(dataset, holder="node", user=node).id)
    common = {"dataset": dataset.pk, "claim": claim}
    batch = [
        {**common, "stage": 1, "state": 2},
        {**common, "stage": 2, "state": 1, "image_digest": DIGEST},
    ]
    r = api_as(token).post("/api/statuses/batch/", batch, format="json")
    assert r.status_code == 201, r.content
    assert [row["image_digest"] for row in r.json()] == ["", DIGEST]


@pytest.mark.parametrize(
    "digest", ["0" * 64, "sha256:" + "A" * 64, "sha256:abc", "md5:" + "0" * 64]
)
def test_an_image_digest_not_sha256_is_refused(project: Project, digest: str) -> None:
    dataset = make_dataset(project, name="d")
    node, token = make_user("node", role="worker", projects=[project])
    claim = claims.claim_dataset(dataset, holder="node", user=node)
    body = {
        "dataset": dataset.pk, "stage": 2, "state": 1, "claim": str(claim.id),
        "image_digest": digest,
    }  # fmt: skip
    r = api_as(token).post("/api/statuses/", body, format="json")
    assert r.status_code == 400
    message = "Give the image digest as 'sha256:' and 64 lowercase hexadecimal digits."
    assert r.json()["image_digest"] == [message]
    assert r.json()["detail"] == f"Invalid input. image_digest: {message}"


def test_the_service_records_a_digest_without_the_api(project: Project) -> None:
    dataset = make_dataset(project, name="d")
    claim = claims.claim_dataset(dataset, holder="h")
    status, created = statuses.record_status(
        dataset=dataset, stage=Stage.WORKFLOW, state=State.START, claim_id=claim.id,
        image_digest=DIGEST,
    )  # fmt: skip
    assert created and status.image_digest == DIGEST
    assert Status.objects.get(pk=status.pk).image_digest == DIGEST
