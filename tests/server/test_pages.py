"""The HTML pages: what they show, who may see them, and how many queries they cost."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crunch.choices import DatasetState, Stage, State
from crunch.models import Dataset, Status
from crunch.services import pages
from tests.factories import bulk_datasets, make_dataset, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    user = get_user_model().objects.create_user("boss", password="pw", is_staff=True)
    client.force_login(user)
    return client


def project_url(project: Any, query: str = "") -> str:
    return reverse("crunch:project-detail", kwargs={"slug": project.slug}) + query


def test_anonymous_sees_public_projects_only(client: Client) -> None:
    make_project(name="Open", is_public=True)
    make_project(name="Secret")

    response = client.get(reverse("crunch:project-list"))

    assert response.status_code == 200
    assert b"Open" in response.content
    assert b"Secret" not in response.content


def test_anonymous_gets_404_for_private_project_dataset_and_file(
    client: Client, media_root: Any
) -> None:
    dataset = make_dataset(make_project(name="Secret"), name="hidden")
    storages["default"].save(f"{dataset.base_file_path}/result.txt", ContentFile(b"secret"))

    assert client.get(project_url(dataset.project)).status_code == 404
    assert client.get(dataset.get_absolute_url()).status_code == 404
    file_url = reverse("crunch:dataset-file", kwargs={"slug": dataset.slug, "path": "result.txt"})
    assert client.get(file_url).status_code == 404


def test_staff_sees_private_project_and_admin_link(staff_client: Client) -> None:
    project = make_project(name="Secret")

    response = staff_client.get(project_url(project))

    assert response.status_code == 200
    assert reverse("admin:crunch_project_change", args=[project.pk]).encode() in response.content
    assert reverse("admin:index").encode() in response.content


def test_signed_in_user_without_permission_sees_public_only(client: Client) -> None:
    user = get_user_model().objects.create_user("reader", password="pw")
    client.force_login(user)
    project = make_project(name="Secret")

    assert client.get(project_url(project)).status_code == 404


def test_pages_refuse_post(client: Client) -> None:
    project = make_project(name="Open", is_public=True)

    assert client.post(project_url(project)).status_code == 405


def test_project_page_shows_figures_failures_and_clients(client: Client) -> None:
    project = make_project(name="Open", is_public=True)
    bulk_datasets(project, 3, prefix="todo")
    bulk_datasets(
        project, 4, prefix="bad", state=DatasetState.FAILED, note="Traceback\nKeyError: 'x'"
    )
    bulk_datasets(project, 2, prefix="done", state=DatasetState.COMPLETED, finished=timezone.now())
    running = make_dataset(
        project, name="busy", state=DatasetState.RUNNING, stage=Stage.WORKFLOW,
        claim_holder="alice@node7", heartbeat=timezone.now(),
    )  # fmt: skip
    Status.objects.create(dataset=running, stage=Stage.SETUP, state=State.START, hostname="node7")

    response = client.get(project_url(project))

    html = response.content.decode()
    assert 'data-count="failed">4<' in html
    assert 'data-count="total">10<' in html
    assert "KeyError: &#x27;x&#x27;" in html
    assert "alice@node7" in html and "node7</td>" in html
    assert "Workflow" in html


def test_failure_groups_largest_first_with_examples() -> None:
    project = make_project()
    bulk_datasets(project, 7, prefix="a", state=DatasetState.FAILED, note="disk full")
    bulk_datasets(project, 2, prefix="b", state=DatasetState.FAILED, note="timeout")

    groups = pages.failure_groups(project)

    assert [(g.note, g.count, len(g.examples)) for g in groups] == [
        ("disk full", 7, 5),
        ("timeout", 2, 2),
    ]


def test_table_filters_searches_sorts_and_pages(client: Client) -> None:
    project = make_project(name="Open", is_public=True)
    bulk_datasets(project, 60, prefix="alpha")
    bulk_datasets(project, 3, prefix="beta", state=DatasetState.COMPLETED)

    first = client.get(project_url(project)).content.decode()
    failed = client.get(project_url(project, "?state=completed")).content.decode()
    search = client.get(project_url(project, "?q=beta1")).content.decode()
    second = client.get(project_url(project, "?page=2&sort=-name")).content.decode()

    assert "Showing 1–50 of 63" in first and 'rel="next"' in first
    assert "Showing 1–3 of 3" in failed and "alpha" not in failed.split('id="datasets"')[1]
    assert ">beta1<" in search and ">beta2<" not in search
    assert "Showing 51–63 of 63" in second and ">alpha0<" in second


def test_live_fragment_holds_only_live_parts(client: Client) -> None:
    project = make_project(name="Open", is_public=True)

    html = client.get(project_url(project, "?live=1")).content.decode()

    assert 'id="figures"' in html and 'id="datasets"' in html
    assert "<form" not in html


def test_details_markdown_is_rendered_with_html_escaped(client: Client) -> None:
    project = make_project(
        name="Open",
        is_public=True,
        details="**bold** <script>alert(1)</script> [x](javascript:alert(1))",
    )

    html = client.get(project_url(project)).content.decode()

    assert "<strong>bold</strong>" in html
    assert "<script>alert" not in html and "javascript:alert" not in html


def test_dataset_page_timeline_log_and_files(client: Client, media_root: Any) -> None:
    project = make_project(name="Open", is_public=True)
    dataset = make_dataset(project, name="one", state=DatasetState.FAILED, note="boom at step 3")
    start = timezone.now() - datetime.timedelta(minutes=10)
    for minutes, stage, state in [(0, 1, 1), (1, 1, 2), (1, 2, 1), (4, 2, 3)]:
        Status.objects.create(
            dataset=dataset, stage=stage, state=state, hostname="hpc-17",
            created=start + datetime.timedelta(minutes=minutes),
        )  # fmt: skip
    storage = storages["default"]
    storage.save(
        f"{dataset.base_file_path}/.crunch/workflow.log",
        ContentFile(b"x" * 20000 + b"\nlast line\n"),
    )
    storage.save(f"{dataset.base_file_path}/out/result.csv", ContentFile(b"a,b\n1,2\n"))

    html = client.get(dataset.get_absolute_url()).content.decode()

    assert "boom at step 3" in html
    assert "hpc-17" in html and ">1m<" in html and ">3m<" in html
    assert "last line" in html
    assert "result.csv" in html
    download = client.get(
        reverse("crunch:dataset-file", kwargs={"slug": dataset.slug, "path": "out/result.csv"})
    )
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"a,b\n1,2\n"
    assert download["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize("path", ["../other/secret.txt", "out/../../x", "/etc/passwd"])
def test_file_view_refuses_paths_outside_the_dataset(
    client: Client, media_root: Any, path: str
) -> None:
    dataset = make_dataset(make_project(name="Open", is_public=True), name="one")

    assert pages.safe_relative_path(path) is None
    url = reverse("crunch:dataset-file", kwargs={"slug": dataset.slug, "path": "x"})[
        :-1
    ] + path.lstrip("/")
    assert client.get(url).status_code == 404


def test_stage_runs_pair_start_with_end() -> None:
    t0 = timezone.now()
    statuses = [
        Status(stage=1, state=1, created=t0, hostname="a"),
        Status(stage=1, state=2, created=t0 + datetime.timedelta(seconds=5), hostname="a"),
        Status(stage=2, state=1, created=t0 + datetime.timedelta(seconds=6), hostname="a"),
    ]

    runs = pages.stage_runs(statuses)

    assert [(r.stage, r.state, r.seconds) for r in runs] == [
        ("Setup", "Success", 5.0),
        ("Workflow", "Running", None),
    ]


@pytest.mark.parametrize("url_name", ["crunch:project-list", "crunch:project-detail"])
def test_query_count_does_not_grow_with_datasets(
    client: Client, django_assert_max_num_queries: Any, url_name: str
) -> None:
    """10 datasets or 500: the same number of queries."""
    project = make_project(name="Open", is_public=True)
    url = reverse(url_name, kwargs={"slug": project.slug} if url_name.endswith("detail") else {})
    counts = []
    for extra in (10, 490):
        bulk_datasets(project, extra // 2, prefix=f"p{extra}-")
        bulk_datasets(
            project, extra // 4, prefix=f"f{extra}-", state=DatasetState.FAILED, note=f"n{extra}"
        )
        bulk_datasets(project, extra - extra // 2 - extra // 4, prefix=f"r{extra}-",
                      state=DatasetState.RUNNING, heartbeat=timezone.now())  # fmt: skip
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert Dataset.objects.count() == 500
    assert counts[0] == counts[1]
    # Two more than before issue 23: the failed datasets waiting to retry and the claims
    # whose lease expired, each one grouped query, asked only when pending/running exist.
    # One more since issue 27, when running: the slots of the live loops.
    # One more since issue 29: the project's result keys (its columns and filters).
    with django_assert_max_num_queries(12):
        client.get(url)
