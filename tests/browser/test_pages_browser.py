"""The pages in a real browser: browsing, filtering, live refresh and access."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.urls import reverse
from playwright.sync_api import expect

from crunch.choices import DatasetState
from tests.factories import bulk_datasets, make_client_user, make_dataset, make_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_walk_projects_to_project_to_dataset(live_server: Any, page: Any) -> None:
    project = make_project(name="Survey", is_public=True, description="Ocean temperatures")
    bulk_datasets(project, 5, prefix="station-")
    make_dataset(project, name="reef", state=DatasetState.FAILED, note="KeyError: 'salinity'")

    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    page.get_by_role("link", name="Survey").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Survey")
    expect(page.locator("#failures")).to_contain_text("KeyError: 'salinity'")
    page.locator("#datasets").get_by_role("link", name="reef").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("reef")
    expect(page.locator("[data-state]")).to_have_text("Failed")
    expect(page.locator("pre.note")).to_have_text("KeyError: 'salinity'")
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Survey").click()
    expect(page).to_have_url(re.compile(r"/projects/survey/$"))


def test_filter_and_search_the_datasets_table(live_server: Any, page: Any) -> None:
    project = make_project(name="Survey", is_public=True)
    bulk_datasets(project, 60, prefix="station-")
    bulk_datasets(project, 3, prefix="broken-", state=DatasetState.FAILED, note="boom")
    rows = page.locator("#datasets tbody tr")

    page.goto(live_server.url + project.get_absolute_url())
    expect(rows).to_have_count(50)
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Apply").click()

    expect(rows).to_have_count(3)
    expect(page.locator("#datasets")).to_contain_text("Showing 1–3 of 3")
    page.get_by_label("State").select_option("")
    page.get_by_label("Name contains").fill("station-4")
    page.get_by_role("button", name="Apply").click()

    # station-4 and station-40 ... station-49
    expect(rows).to_have_count(11)
    page.locator("#datasets thead").get_by_role("link", name="Name").click()
    expect(rows.first.locator("td").first).to_have_text("station-4")
    page.locator("#datasets thead").get_by_role("link", name=re.compile("Name")).click()
    expect(rows.first.locator("td").first).to_have_text("station-49")


def test_status_sent_through_the_api_shows_without_reload(
    live_server: Any, page: Any, fast_refresh: None
) -> None:
    project = make_project(name="Survey", is_public=True)
    make_dataset(project, name="alpha")
    _user, token = make_client_user("worker")
    headers = {"Authorization": f"Token {token}"}
    page.goto(live_server.url + project.get_absolute_url())
    expect(page.locator("#clients")).to_contain_text("No client is working")
    page.evaluate("window.__notReloaded = true")

    claim = requests.post(
        f"{live_server.url}/api/next/", json={"holder": "worker@hpc-7"}, headers=headers, timeout=10
    )
    assert claim.status_code == 200, claim.text
    body = claim.json()
    status = requests.post(
        f"{live_server.url}/api/statuses/",
        json={
            "dataset": body["dataset"]["id"],
            "stage": 1,
            "state": 1,
            "claim": body["claim"]["id"],
            "hostname": "hpc-7",
        },
        headers=headers,
        timeout=10,
    )
    assert status.status_code == 201, status.text

    clients = page.locator("#clients")
    expect(clients).to_contain_text("worker@hpc-7")
    expect(clients).to_contain_text("hpc-7")
    expect(clients).to_contain_text("Setup")
    expect(page.locator('[data-count="running"]')).to_have_text("1")
    assert page.evaluate("window.__notReloaded") is True


def test_anonymous_cannot_see_a_private_project_or_its_files(
    live_server: Any, page: Any, media_root: Any
) -> None:
    make_project(name="Open", is_public=True)
    secret = make_dataset(make_project(name="Secret"), name="classified")
    storages["default"].save(f"{secret.base_file_path}/result.txt", ContentFile(b"top secret"))
    file_url = reverse("crunch:dataset-file", kwargs={"slug": secret.slug, "path": "result.txt"})

    page.goto(live_server.url + "/")
    expect(page.get_by_role("link", name="Open")).to_be_visible()
    expect(page.get_by_role("link", name="Secret")).to_have_count(0)
    assert page.goto(live_server.url + secret.project.get_absolute_url()).status == 404
    assert page.goto(live_server.url + secret.get_absolute_url()).status == 404
    assert requests.get(live_server.url + file_url, timeout=10).status_code == 404

    get_user_model().objects.create_user("boss", password="pw-123456", is_staff=True)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("pw-123456")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Secret").click()
    expect(page.get_by_role("link", name="Edit this project in the admin")).to_be_visible()
    page.get_by_role("link", name="classified").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="result.txt").click()
    assert open(download.value.path(), "rb").read() == b"top secret"
