"""Input that cannot hurt: every hostile input gets a 4xx, never a 500, on SQLite and PostgreSQL.

Run on PostgreSQL with ``make test-postgres`` (DATABASE_URL=postgres://...), where NUL in
text and integer columns of 32 bits refuse what SQLite would store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from crunch.models import Dataset, Project
from crunch.services.paths import UnsafePath, clean_base_file_path, overlapping_dataset
from tests.factories import make_dataset, make_project

pytestmark = pytest.mark.django_db

SHA = "0123456789abcdef" * 4


@pytest.fixture
def admin_api(db: None) -> APIClient:
    """An API client signed in as a superuser: may create and change anything."""
    user = get_user_model().objects.create_superuser("root", password="pw")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def project(db: None) -> Project:
    return make_project(name="Alpha", is_public=True)


def detail(response: Any) -> str:
    body = response.json()
    assert isinstance(body, dict) and "detail" in body, body
    return str(body["detail"])


# --- base_file_path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../outside", "'..'"),
        ("crunch/../../etc", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "Null characters"),
        ("a\nb", "control character"),
        (".", "root"),
        ("./", "root"),
    ],
)
def test_unsafe_base_file_path_is_refused_with_one_line(
    admin_api: APIClient, project: Project, path: str, words: str
) -> None:
    r = admin_api.post(
        "/api/datasets/", {"name": "One", "parent": "alpha", "base_file_path": path}, format="json"
    )
    assert r.status_code == 400, r.content
    assert "base_file_path" in r.json()
    message = detail(r)
    assert words in message and "\n" not in message
    assert not Dataset.objects.exists()


def test_base_file_path_is_normalised(admin_api: APIClient, project: Project) -> None:
    r = admin_api.post(
        "/api/datasets/",
        {"name": "One", "parent": "alpha", "base_file_path": "data//one/./raw/"},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert r.json()["base_file_path"] == "data/one/raw"


@pytest.mark.parametrize(
    ("existing", "new"),
    [("data/one", "data/one"), ("data/one", "data"), ("data", "data/one/raw")],
    ids=["equal", "holds-another", "inside-another"],
)
def test_dataset_folders_may_not_overlap(
    admin_api: APIClient, project: Project, existing: str, new: str
) -> None:
    make_dataset(project, name="Old", base_file_path=existing)
    r = admin_api.post(
        "/api/datasets/", {"name": "New", "parent": "alpha", "base_file_path": new}, format="json"
    )
    assert r.status_code == 400, r.content
    assert "alpha:old" in detail(r) and "folder of its own" in detail(r)


def test_sibling_folder_with_a_common_prefix_is_fine(
    admin_api: APIClient, project: Project
) -> None:
    make_dataset(project, name="Old", base_file_path="data/one")
    r = admin_api.post(
        "/api/datasets/", {"name": "New", "parent": "alpha", "base_file_path": "data/one-b"},
        format="json",
    )  # fmt: skip
    assert r.status_code == 201, r.content


def test_moving_a_folder_into_another_is_refused_but_keeping_it_is_not(
    admin_api: APIClient, project: Project
) -> None:
    make_dataset(project, name="Old", base_file_path="data/old")
    mine = make_dataset(project, name="Mine", base_file_path="data/mine")
    url = f"/api/datasets/{mine.slug}/"

    moved = admin_api.patch(url, {"base_file_path": "data/old/sub"}, format="json")
    kept = admin_api.patch(url, {"base_file_path": "data/mine", "priority": 3}, format="json")

    assert moved.status_code == 400 and "alpha:old" in detail(moved)
    assert kept.status_code == 200, kept.content


def test_default_folder_inside_another_dataset_is_refused(
    admin_api: APIClient, project: Project
) -> None:
    make_dataset(project, name="Everything", base_file_path="crunch/alpha")
    r = admin_api.post("/api/datasets/", {"name": "One", "parent": "alpha"}, format="json")
    assert r.status_code == 400
    assert "'crunch/alpha/one'" in detail(r)


def test_clean_base_file_path_and_overlapping_dataset(project: Project) -> None:
    assert clean_base_file_path("a//b/./c/") == "a/b/c"
    with pytest.raises(UnsafePath, match=r"holds '\.\.'"):
        clean_base_file_path("a/../b")
    other = make_dataset(project, name="Other", base_file_path="x/y")
    assert overlapping_dataset("x") == other
    assert overlapping_dataset("x/y/z") == other
    assert overlapping_dataset("x/y", exclude_pk=other.pk) is None
    assert overlapping_dataset("X/y/z") is None  # case matters in storage, also on SQLite
    assert overlapping_dataset("x/yz") is None


# --- the file browser -------------------------------------------------------------------


def page(client: Client, dataset: Dataset) -> Any:
    response = client.get(dataset.get_absolute_url())
    assert response.status_code == 200
    return response


def file_url(dataset: Dataset, path: str) -> str:
    return reverse("crunch:dataset-file", kwargs={"slug": dataset.slug, "path": path})


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the storage holding a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


def test_symlinks_out_of_the_storage_are_neither_listed_nor_served(
    client: Client, media_root: Path, outside: Path, project: Project
) -> None:
    dataset = make_dataset(project, name="One")
    folder = media_root / dataset.base_file_path
    folder.mkdir(parents=True)
    (folder / "result.txt").write_text("mine")
    (folder / "file-link.txt").symlink_to(outside / "secret.txt")
    (folder / "dir-link").symlink_to(outside)

    content = page(client, dataset).content

    assert b"result.txt" in content
    assert b"file-link" not in content and b"dir-link" not in content
    assert client.get(file_url(dataset, "result.txt")).status_code == 200
    assert client.get(file_url(dataset, "file-link.txt")).status_code == 404
    assert client.get(file_url(dataset, "dir-link/secret.txt")).status_code == 404


def test_symlink_to_another_datasets_folder_is_not_served(
    client: Client, media_root: Path, project: Project
) -> None:
    public = make_dataset(project, name="Public")
    private = make_dataset(make_project(name="Private"), name="Hidden")
    (media_root / private.base_file_path).mkdir(parents=True)
    (media_root / private.base_file_path / "secret.txt").write_text("top secret")
    (media_root / public.base_file_path).mkdir(parents=True)
    (media_root / public.base_file_path / "peek").symlink_to(media_root / private.base_file_path)

    assert b"peek" not in page(client, public).content
    assert client.get(file_url(public, "peek/secret.txt")).status_code == 404


def test_stored_unsafe_base_file_path_shows_no_files(
    client: Client, media_root: Path, outside: Path, project: Project
) -> None:
    """A row saved before the API checked paths (or by hand) cannot reach outside."""
    dataset = make_dataset(project, name="One")
    Dataset.objects.filter(pk=dataset.pk).update(base_file_path="../outside")
    dataset.refresh_from_db()

    assert b"secret.txt" not in page(client, dataset).content
    assert client.get(file_url(dataset, "secret.txt")).status_code == 404


def test_a_tree_100_levels_deep_and_a_symlink_loop_render(
    client: Client, media_root: Path, project: Project
) -> None:
    dataset = make_dataset(project, name="One")
    deep = media_root / dataset.base_file_path
    for level in range(100):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("x")
    (media_root / dataset.base_file_path / "loop").symlink_to(".")

    content = page(client, dataset).content

    assert b"d0/" in content and b"d15/" in content


def test_file_names_not_utf8_or_holding_newlines_are_shown_without_links(
    client: Client, media_root: Path, project: Project
) -> None:
    dataset = make_dataset(project, name="One")
    folder = media_root / dataset.base_file_path
    folder.mkdir(parents=True)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name")
    (folder / "two\nlines.txt").write_text("newline")
    (folder / "plain.txt").write_text("plain")

    content = page(client, dataset).content.decode("utf-8")

    assert "caf\ufffd.txt" in content and "two\nlines.txt" in content
    assert content.count('class="file"><a ') == 1  # only plain.txt is linked
    assert client.get(file_url(dataset, "caf%E9.txt")).status_code == 404
    assert client.get(file_url(dataset, "two%0Alines.txt")).status_code == 404


# --- page numbers ------------------------------------------------------------------------

PAGES = ["99999999999999999999", "-1", "0", "١٢", "1" * 5000, "abc", "1e3", "²"]


@pytest.mark.parametrize("number", PAGES)
def test_any_page_number_on_a_project_page_renders(
    client: Client, project: Project, number: str
) -> None:
    make_dataset(project, name="One")
    response = client.get(project.get_absolute_url(), {"page": number})
    assert response.status_code == 200


@pytest.mark.parametrize("number", PAGES)
def test_any_page_number_in_the_api_is_a_404_or_the_page(
    admin_api: APIClient, project: Project, number: str
) -> None:
    r = admin_api.get("/api/projects/", {"page": number})
    assert r.status_code in (200, 404), r.content
    if r.status_code == 404:
        assert "Invalid page" in detail(r)


# --- NUL bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/projects/a%00b/",
        "/api/datasets/alpha:a%00b/",
        "/api/items/a%00b/",
        "/api/projects/a%00b/stats/",
    ],
)
def test_nul_in_an_api_slug_is_404(admin_api: APIClient, project: Project, url: str) -> None:
    r = admin_api.get(url)
    assert r.status_code == 404, r.content
    detail(r)


@pytest.mark.parametrize(
    "query",
    [
        {"project": "a\x00b"},
        {"dataset": "a\x00b"},
        {"item": "a\x00b"},
    ],
)
def test_nul_in_an_api_query_is_never_a_500(
    admin_api: APIClient, project: Project, query: dict[str, str]
) -> None:
    name = {"project": "datasets", "dataset": "statuses", "item": "attributes"}[next(iter(query))]
    r = admin_api.get(f"/api/{name}/", query)
    assert r.status_code in (200, 404), r.content  # 200: an empty list; 404: no such owner
    if r.status_code == 200:
        assert r.json()["results"] == []


def test_nul_in_page_urls_and_queries(client: Client, project: Project) -> None:
    dataset = make_dataset(project, name="One")
    assert client.get("/datasets/alpha:a%00b/").status_code == 404
    assert client.get(f"/datasets/{dataset.slug}%00/files/x.txt").status_code == 404
    assert client.get(file_url(dataset, "a%00b.txt")).status_code == 404
    for query in ({"q": "a\x00b"}, {"note": "\x00"}, {"state": "\x00"}, {"sort": "\x00"}):
        assert client.get(project.get_absolute_url(), query).status_code == 200


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/projects/", {"name": "a\x00b"}),
        ("/api/projects/", {"name": "ok", "workflow": "echo \x00"}),
        ("/api/datasets/", {"name": "One", "parent": "alpha\x00"}),
        ("/api/datasets/", {"name": "One", "parent": "alpha", "description": "\x00"}),
        ("/api/statuses/", {"dataset": "alpha:one\x00", "stage": 1, "state": 1}),
        ("/api/statuses/", {"dataset": "alpha:one", "stage": 1, "state": 1, "note": "\x00"}),
        ("/api/attributes/char/", {"item": "alpha\x00", "key": "k", "value": "v"}),
        ("/api/attributes/char/", {"item": "alpha", "key": "k", "value": "v\x00"}),
        ("/api/next/", {"holder": "me\x00"}),
    ],
)
def test_nul_in_a_json_body_is_400(
    admin_api: APIClient, project: Project, url: str, body: dict[str, Any]
) -> None:
    make_dataset(project, name="One")
    r = admin_api.post(url, body, format="json")
    assert r.status_code == 400, r.content
    assert detail(r).startswith("Invalid input.")


# --- over-long names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a" * 1023, "\u3389" * 300], ids=["1023-chars", "expands-under-slugify"]
)
def test_project_name_whose_slug_would_not_fit_is_refused(admin_api: APIClient, name: str) -> None:
    r = admin_api.post("/api/projects/", {"name": name}, format="json")
    assert r.status_code == 400, r.content
    assert "give a shorter name" in detail(r)
    assert not Project.objects.exists()


def test_project_name_past_the_column_is_refused(admin_api: APIClient) -> None:
    r = admin_api.post("/api/projects/", {"name": "a" * 1024}, format="json")
    assert r.status_code == 400
    assert "1023" in detail(r)


def test_dataset_and_item_names_count_their_owners_slug(
    admin_api: APIClient, project: Project
) -> None:
    long_name = "d" * (1011 - len("alpha:") + 1)
    r = admin_api.post("/api/datasets/", {"name": long_name, "parent": "alpha"}, format="json")
    assert r.status_code == 400 and "give a shorter name" in detail(r)

    dataset = make_dataset(project, name="d" * 600, base_file_path="data/long")
    r = admin_api.post("/api/items/", {"name": "i" * 600, "parent": dataset.slug}, format="json")
    assert r.status_code == 400 and "give a shorter name" in detail(r)
    r = admin_api.post("/api/items/", {"name": "i" * 300, "parent": dataset.slug}, format="json")
    assert r.status_code == 201, r.content


# --- integers ----------------------------------------------------------------------------

HUGE = [2**31, 2**63, 10**30, -(2**63) - 1]


@pytest.mark.parametrize("value", HUGE)
def test_priority_past_its_column_is_400(
    admin_api: APIClient, project: Project, value: int
) -> None:
    r = admin_api.post(
        "/api/datasets/", {"name": "One", "parent": "alpha", "priority": value}, format="json"
    )
    assert r.status_code == 400 and "priority" in r.json(), r.content


@pytest.mark.parametrize("value", [2**31, 2**63, 10**30])
def test_max_attempts_past_its_column_is_400(admin_api: APIClient, value: int) -> None:
    r = admin_api.post("/api/projects/", {"name": "P", "max_attempts": value}, format="json")
    assert r.status_code == 400 and "max_attempts" in r.json(), r.content


@pytest.mark.parametrize(
    ("kind", "value"), [("int", 2**63), ("int", -(2**63) - 1), ("filesize", 2**64)]
)
def test_integer_attribute_past_64_bits_is_400(
    admin_api: APIClient, project: Project, kind: str, value: int
) -> None:
    r = admin_api.post(
        f"/api/attributes/{kind}/", {"item": "alpha", "key": "n", "value": value}, format="json"
    )
    assert r.status_code == 400 and "value" in r.json(), r.content


def test_integer_attribute_at_64_bits_is_stored(admin_api: APIClient, project: Project) -> None:
    r = admin_api.post(
        "/api/attributes/int/", {"item": "alpha", "key": "n", "value": 2**63 - 1}, format="json"
    )
    assert r.status_code == 201, r.content


@pytest.mark.parametrize("value", [10**30, 2**63, -1])
def test_lease_seconds_out_of_range_is_400(
    admin_api: APIClient, project: Project, value: int
) -> None:
    make_dataset(project, name="One")
    r = admin_api.post("/api/next/", {"lease_seconds": value}, format="json")
    assert r.status_code == 400 and "lease_seconds" in r.json(), r.content


def test_status_memory_past_64_bits_is_400(admin_api: APIClient, project: Project) -> None:
    dataset = make_dataset(project, name="One")
    r = admin_api.post(
        "/api/statuses/",
        {"dataset": dataset.pk, "stage": 1, "state": 1, "memory_total": 2**64},
        format="json",
    )
    assert r.status_code == 400 and "memory_total" in r.json(), r.content


def test_a_5000_digit_integer_literal_is_400(admin_api: APIClient) -> None:
    body = '{"name": "P", "max_attempts": ' + "9" * 5000 + "}"
    r = admin_api.post("/api/projects/", body, content_type="application/json")
    assert r.status_code == 400
    assert "JSON parse error" in detail(r)


# --- Unicode digits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [("١", 404), ("²", 404), ("１", 404), ("99999999999999999999999", 400)],
)  # a slug no dataset has (404, as a private one's); a number no id can be (400)
def test_unicode_digits_are_no_dataset_id(
    admin_api: APIClient, project: Project, text: str, code: int
) -> None:
    make_dataset(project, name="One")
    r = admin_api.post("/api/statuses/", {"dataset": text, "stage": 1, "state": 1}, format="json")
    assert r.status_code == code, r.content
    assert "No dataset has the id or slug" in detail(r)


@pytest.mark.parametrize("text", ["١", "²", "99999999999999999999999"])
def test_unicode_digits_in_api_urls_and_filters(
    admin_api: APIClient, project: Project, text: str
) -> None:
    assert admin_api.get(f"/api/statuses/{text}/").status_code == 404
    r = admin_api.get("/api/statuses/", {"dataset": text})
    # SQLite binds no integer past 64 bits (404); PostgreSQL's filter finds nothing (200).
    assert r.status_code in (200, 404), r.content
    assert r.status_code == 404 or r.json()["results"] == []


# --- deep and large bodies -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_json_is_400(admin_api: APIClient, depth: int, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * depth
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    r = admin_api.post("/api/projects/", body, content_type="application/json")
    assert r.status_code == 400
    assert "nested too deeply" in detail(r)


def test_nested_but_parsable_json_in_a_text_field_is_400(admin_api: APIClient) -> None:
    value = '{"a": [' * 400 + '"x"' + "]}" * 400  # deeper than json.dumps would write
    r = admin_api.post("/api/projects/", f'{{"name": {value}}}', content_type="application/json")
    assert r.status_code == 400 and "name" in r.json()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"name": "' + b"x" * 5000 + b'"}'),
        ("application/x-www-form-urlencoded", b"name=" + b"x" * 5000),
    ],
)
def test_oversized_body_is_a_json_413(
    admin_api: APIClient, settings: Any, content_type: str, body: bytes
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = admin_api.post("/api/projects/", body, content_type=content_type)
    assert r.status_code == 413
    assert r["Content-Type"].startswith("application/json")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in detail(r)
    assert not Project.objects.exists()


def test_oversized_multipart_body_is_a_json_413(admin_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = admin_api.post("/api/projects/", {"name": "x" * 5000}, format="multipart")
    assert r.status_code == 413
    detail(r)


# --- statuses: claim ids hidden, workflow_sha256 --------------------------------------------


def test_claim_ids_are_returned_by_the_claim_only(admin_api: APIClient, project: Project) -> None:
    dataset = make_dataset(project, name="One")
    claim = admin_api.post("/api/next/", {"holder": "me"}, format="json").json()["claim"]["id"]

    posted = admin_api.post(
        "/api/statuses/",
        {"dataset": dataset.pk, "stage": 1, "state": 1, "claim": claim, "workflow_sha256": SHA},
        format="json",
    )
    listed = admin_api.get("/api/statuses/", {"dataset": dataset.slug})

    assert posted.status_code == 201, posted.content
    assert "claim" not in posted.json() and posted.json()["workflow_sha256"] == SHA
    assert [row.get("claim") for row in listed.json()["results"]] == [None]
    assert claim not in listed.content.decode()


@pytest.mark.parametrize("digest", [SHA.upper(), SHA[:-1], SHA + "0", SHA[:-1] + "g", "-" * 64])
def test_workflow_sha256_must_be_64_lowercase_hex_digits(
    admin_api: APIClient, project: Project, digest: str
) -> None:
    dataset = make_dataset(project, name="One")
    r = admin_api.post(
        "/api/statuses/",
        {"dataset": dataset.pk, "stage": 1, "state": 1, "workflow_sha256": digest},
        format="json",
    )
    assert r.status_code == 400, r.content
    assert "workflow_sha256" in r.json()
