"""What the API answers a worker or a stranger who sends what they should not: notes of
any size, another user's keys, statuses without a claim, slugs of private objects, moves,
forms of many fields (issue 22, points 8 and 12 to 16)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from crunch.models import Attribute, Dataset, Item, Project, Status
from crunch.services.notes import cut_note
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


def client_of(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def worker(name: str, *projects: Project) -> tuple[Any, APIClient]:
    user, token = make_user(name, role="worker", projects=list(projects))
    return user, client_of(token)


def claim(api: APIClient, dataset: Dataset, **body: Any) -> str:
    r = api.post(f"/api/datasets/{dataset.slug}/claim/", body, format="json")
    assert r.status_code == 200, r.content
    return str(r.json()["claim"]["id"])


def post_status(api: APIClient, dataset: Dataset, stage: int, state: int, **body: Any) -> Any:
    body = {"dataset": dataset.pk, "stage": stage, "state": state, **body}
    return api.post("/api/statuses/", body, format="json")


# --- 12. notes are held to CRUNCH_NOTE_MAX_BYTES -----------------------------------------------

HEAD, TAIL = "Traceback (most recent call last):\n", "\nMemoryError: the real reason"
BIG = HEAD + "é" * 1_200_000 + TAIL  # 2.4 MB of UTF-8


def test_a_huge_note_keeps_its_head_and_tail_around_a_marker(settings: Any) -> None:
    settings.CRUNCH_NOTE_MAX_BYTES = 4096
    dataset = make_dataset(make_project(name="Alpha"))
    _, api = worker("node")
    claim_id = claim(api, dataset)
    r = post_status(api, dataset, 1, 3, claim=claim_id, note=BIG)
    assert r.status_code == 201, r.content[:300]
    stored = Status.objects.get(state=3).note
    size = len(BIG.encode())
    assert len(stored.encode()) <= 4096 and stored == r.json()["note"]
    assert stored.startswith(HEAD) and stored.endswith(TAIL)
    kept = len(stored.encode()) - len(f"\n[... {size - 4000:,} bytes cut ...]\n")
    assert f"\n[... {size - kept:,} bytes cut ...]\n" in stored
    dataset.refresh_from_db()
    assert dataset.note == stored  # the failure shown on the pages: the same cut note


def test_release_notes_and_batches_are_cut_too_so_the_history_stays_small(settings: Any) -> None:
    dataset = make_dataset(make_project(name="Alpha", is_public=True))
    _, api = worker("node")
    for _ in range(20):  # the audit's twenty releases of 2.4 MB: a 50 MB page
        claim_id = claim(api, dataset)
        r = api.post(f"/api/claims/{claim_id}/release/", {"note": BIG}, format="json")
        assert r.status_code == 200, r.content[:300]
    claim_id = claim(api, dataset)
    note = BIG[:100_000] + TAIL  # two in one body: below DATA_UPLOAD_MAX_MEMORY_SIZE
    batch = [
        {"dataset": dataset.pk, "stage": 1, "state": 1, "claim": claim_id, "note": note},
        {"dataset": dataset.pk, "stage": 1, "state": 2, "claim": claim_id, "note": note},
    ]
    assert api.post("/api/statuses/batch/", batch, format="json").status_code == 201
    notes = list(Status.objects.values_list("note", flat=True))
    assert len(notes) == 22
    assert all(len(n.encode()) <= 16 * 1024 and n.endswith(TAIL) for n in notes)
    listed = api.get(f"/api/statuses/?dataset={dataset.pk}")
    assert listed.status_code == 200 and len(listed.content) < 22 * 17 * 1024
    page = Client().get(f"/datasets/{dataset.slug}/")
    assert page.status_code == 200 and len(page.content) < 22 * 17 * 1024


def test_names_and_diagnostics_past_their_column_are_refused_not_cut() -> None:
    dataset = make_dataset(make_project(name="Alpha"))
    _, api = worker("node")
    claim_id = claim(api, dataset)
    for field, value in [("hostname", "h" * 256), ("system_version", "v" * 1024)]:
        r = post_status(api, dataset, 1, 1, claim=claim_id, **{field: value})
        assert r.status_code == 400 and field in r.json(), r.content
    r = api.post(f"/api/datasets/{dataset.slug}/claim/", {"holder": "x" * 256}, format="json")
    assert r.status_code == 400 and "holder" in r.json()
    assert not Status.objects.exists()


def test_cut_note_counts_bytes_and_never_splits_a_character() -> None:
    assert cut_note("short", 10) == "short"
    for text in ["€" * 5000, "a" * 9999, "x\ud800" * 3000]:
        cut = cut_note(text, 1000)
        assert len(cut.encode("utf-8", "surrogatepass")) <= 1000
        head, _, rest = cut.partition("\n[... ")
        number, _, tail = rest.partition(" bytes cut ...]\n")
        kept = len((head + tail).encode("utf-8", "surrogatepass"))
        assert int(number.replace(",", "")) + kept == len(text.encode("utf-8", "surrogatepass"))
        assert text.startswith(head) and text.endswith(tail)


# --- 13. idempotency keys belong to their user (and dataset) ------------------------------------


def test_a_status_key_of_another_user_records_the_second_users_own_status() -> None:
    project = make_project(name="Alpha")
    mine, theirs = make_dataset(project, name="Mine"), make_dataset(project, name="Theirs")
    _, first = worker("first")
    _, second = worker("second")
    first_claim, second_claim = claim(first, mine), claim(second, theirs)
    a = post_status(first, mine, 1, 1, claim=first_claim, key="k", note="first's", hostname="h1")
    b = post_status(second, theirs, 1, 1, claim=second_claim, key="k", note="mine", hostname="h2")
    assert (a.status_code, b.status_code) == (201, 201), b.content
    assert (b.json()["note"], b.json()["hostname"], b.json()["dataset"]) == (
        "mine",
        "h2",
        theirs.pk,
    )
    assert Status.objects.filter(key="k").count() == 2
    assert Status.objects.get(dataset=theirs).note == "mine"
    again = post_status(second, theirs, 1, 1, claim=second_claim, key="k", note="mine")
    assert again.status_code == 200 and again.json()["id"] == b.json()["id"]  # a retry: once


def test_a_claim_key_of_another_user_gives_the_second_user_a_claim_of_their_own() -> None:
    project = make_project(name="Alpha")
    make_dataset(project, name="One"), make_dataset(project, name="Two")
    _, first = worker("first")
    _, second = worker("second")
    a = first.post("/api/next/", {"key": "same"}, format="json")
    b = second.post("/api/next/", {"key": "same"}, format="json")
    assert (a.status_code, b.status_code) == (200, 200), b.content
    assert a.json()["claim"]["id"] != b.json()["claim"]["id"]
    assert a.json()["dataset"]["slug"] != b.json()["dataset"]["slug"]
    again = second.post("/api/next/", {"key": "same"}, format="json")  # its answer was lost
    assert again.json()["claim"] == b.json()["claim"]
    assert sorted(Dataset.objects.values_list("claim_user__username", flat=True)) == [
        "first",
        "second",
    ]


def test_a_users_claim_key_on_one_dataset_is_refused_on_another() -> None:
    project = make_project(name="Alpha")
    one, two = make_dataset(project, name="One"), make_dataset(project, name="Two")
    _, api = worker("node")
    first = claim(api, one, key="k")
    assert claim(api, one, key="k") == first  # a retry: the same claim
    r = api.post(f"/api/datasets/{two.slug}/claim/", {"key": "k"}, format="json")
    assert r.status_code == 409 and "belongs to another claim" in r.json()["detail"]
    assert Dataset.objects.get(pk=two.pk).state == "pending"


# --- 14. a status without a claim never reports on a run claimed with one -----------------------


def test_a_status_without_claim_id_cannot_finish_a_run_claimed_with_one() -> None:
    dataset = make_dataset(make_project(name="Alpha"))
    _, api = worker("node")
    claim_id = claim(api, dataset, holder="node@host-1")
    for stage, state in [(3, 2), (1, 3), (2, 1)]:
        r = post_status(api, dataset, stage, state, hostname="host-1")
        assert r.status_code == 409, r.content
        assert "must carry its claim id" in r.json()["detail"]
    dataset.refresh_from_db()
    assert (dataset.state, str(dataset.claim_id)) == ("running", claim_id)
    assert not Status.objects.exists()


def test_the_01_path_without_any_claim_still_runs_a_dataset() -> None:
    dataset = make_dataset(make_project(name="Alpha"))
    _, api = worker("node")
    for stage, state in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]:
        r = post_status(api, dataset, stage, state, hostname="old-client")
        assert r.status_code == 201, r.content
    assert r.json()["dataset_state"] == "completed"
    _, other = worker("other")
    dataset2 = make_dataset(dataset.project, name="Two")
    assert post_status(api, dataset2, 1, 1, hostname="old-client").status_code == 201
    r = post_status(other, dataset2, 3, 2, hostname="old-client")  # another user: refused
    assert r.status_code == 409


# --- 15. no answer tells whether a private object exists ---------------------------------------


@pytest.fixture
def stranger() -> APIClient:
    """Signed in, with no role: beta is private to them."""
    beta = make_project(name="Beta")
    make_dataset(beta, name="B1", base_file_path="private/b1")
    return client_of(make_user("stranger")[1])


@pytest.mark.parametrize(
    ("path", "body", "exists", "missing", "message"),
    [
        ("/api/items/", {"name": "x"}, {"parent": "beta:b1"}, {"parent": "beta:b9"},
         "No dataset or item has the slug {!r}."),
        ("/api/statuses/", {"stage": 1, "state": 1}, {"dataset": "beta:b1"},
         {"dataset": "beta:b9"}, "No dataset has the id or slug {!r}."),
        ("/api/datasets/", {"name": "x"}, {"parent": "beta"}, {"parent": "gamma"},
         "No project has the slug {!r}."),
        ("/api/attributes/char/", {"key": "k", "value": "v"}, {"item": "beta:b1"},
         {"item": "beta:b9"}, "No project, dataset or item has the slug {!r}."),
    ],
)  # fmt: skip
def test_a_private_object_answers_as_one_that_does_not_exist(
    stranger: APIClient, path: str, body: dict[str, Any], exists: dict[str, str],
    missing: dict[str, str], message: str,
) -> None:  # fmt: skip
    answers = []
    for named in (exists, missing):
        r = stranger.post(path, {**body, **named}, format="json")
        (value,) = named.values()
        answers.append((r.status_code, r.json()["detail"].replace(repr(value), "{!r}")))
    assert answers[0] == answers[1] == (404, message)
    assert (Item.objects.count(), Status.objects.count(), Attribute.objects.count()) == (0, 0, 0)
    assert Dataset.objects.count() == 1


def test_a_status_by_id_of_a_private_dataset_answers_as_an_unknown_id(stranger: APIClient) -> None:
    hidden = Dataset.objects.get().pk
    for pk in (hidden, hidden + 1000):
        r = stranger.post("/api/statuses/", {"dataset": pk, "stage": 3, "state": 2}, format="json")
        assert (r.status_code, r.json()["detail"]) == (
            404,
            f"No dataset has the id or slug '{pk}'.",
        )


def test_a_folder_overlap_never_names_a_dataset_the_caller_may_not_see(
    stranger: APIClient,
) -> None:
    alpha = make_project(name="Alpha")
    make_dataset(alpha, name="Seen", base_file_path="shared/seen")
    _, token = make_user("keeper", role="maintainer", projects=[alpha])
    keeper = client_of(token)
    for path in ("private/b1", "private", "private/b1/sub"):
        r = keeper.post(
            "/api/datasets/", {"name": "new", "parent": "alpha", "base_file_path": path},
            format="json",
        )  # fmt: skip
        assert r.status_code == 400, r.content
        assert r.json()["base_file_path"] == [
            f"The folder {path!r} overlaps another dataset's folder; "
            "give each dataset a folder of its own."
        ]
        r = keeper.post(
            "/api/projects/alpha/datasets/", [{"name": "new", "base_file_path": path}],
            format="json",
        )  # fmt: skip
        assert r.status_code == 400, r.content
        assert r.json()["datasets"] == [
            f"Dataset 'alpha:new': the folder {path!r} overlaps the folder of another dataset; "
            "give each dataset a folder of its own."
        ]
    r = keeper.post(
        "/api/datasets/", {"name": "new", "parent": "alpha", "base_file_path": "shared/seen"},
        format="json",
    )  # fmt: skip
    assert "dataset 'alpha:seen'" in r.json()["detail"]  # one the caller may see is named
    assert Dataset.objects.count() == 2


# --- 8 and 16. no moves; JSON errors for what Django would answer in HTML -----------------------


@pytest.fixture
def keeper() -> APIClient:
    """A site-wide maintainer of alpha and beta, each with a dataset; alpha:one has an item."""
    alpha, beta = make_project(name="Alpha"), make_project(name="Beta")
    one = make_dataset(alpha, name="One")
    make_dataset(beta, name="Two")
    Item.objects.create(dataset=one, name="Scan")
    return client_of(make_user("keeper", role="maintainer")[1])


def test_an_item_never_changes_parent_or_dataset(keeper: APIClient) -> None:
    url = "/api/items/alpha:one:scan/"
    for body in ({"parent": "beta:two"}, {"dataset": "beta:two"}, {"parent_item": "beta:two"}):
        r = keeper.patch(url, body, format="json")
        assert r.status_code == 400 and r["Content-Type"] == "application/json", r.content
        (field,) = body
        assert r.json()[field] == [
            "An item never changes dataset or parent: its slug is made from 'alpha:one''s. "
            "Create a new item under 'beta:two' instead."
        ]
    same = keeper.patch(url, {"parent": "alpha:one", "description": "kept"}, format="json")
    assert same.status_code == 200, same.content
    item = Item.objects.get()
    assert (item.dataset.slug, item.parent, item.description) == ("alpha:one", None, "kept")


def test_a_dataset_never_changes_project(keeper: APIClient) -> None:
    for body in ({"parent": "beta"}, {"project": "beta"}, {"parent": "nope"}):
        r = keeper.patch("/api/datasets/alpha:one/", body, format="json")
        assert r.status_code == 400, r.content
        ((field, new),) = body.items()
        assert r.json()[field] == [
            "A dataset never changes project: its slug and the folders made from it, in "
            f"storage and on compute nodes, name 'alpha'. Create a new dataset in {new!r} instead."
        ]
    same = keeper.patch("/api/datasets/alpha:one/", {"parent": "alpha", "priority": 2})
    assert same.status_code == 200, same.content
    assert Dataset.objects.get(slug="alpha:one").project.slug == "alpha"
    assert Dataset.objects.get(slug="alpha:one").priority == 2


def test_a_form_of_too_many_fields_gets_a_json_400(keeper: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
    form = "&".join(f"f{n}=x" for n in range(1001)) + "&name=x&parent=alpha"
    r = keeper.post("/api/datasets/", form, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r["Content-Type"] == "application/json", r.content
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in r.json()["detail"]
    query = keeper.get("/api/datasets/?" + "&".join(f"f{n}=x" for n in range(1001)))
    assert query.status_code == 400 and "more fields" in json.loads(query.content)["detail"]
    assert Dataset.objects.count() == 2
