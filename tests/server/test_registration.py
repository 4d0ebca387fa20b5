"""Bulk registration: one request per batch, idempotent, typed attributes, safe folders."""

from __future__ import annotations

import datetime
import random
from datetime import UTC

import pytest
from rest_framework.test import APIClient

from crunch.models import Attribute, Dataset
from crunch.services import registration
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def maintainer():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_user('keeper', role='maintainer')[1]}")
    return client


def test_register_is_idempotent_and_types_attributes(maintainer):
    make_project(name="Scans")
    body = [
        {"name": "a 1", "attributes": [{"key": "n", "kind": "int", "value": "3"},
                                       {"key": "at", "kind": "lat-long", "value": [1.5, 2]}]},
        {"name": "b", "base_file_path": "raw//b/"},
    ]  # fmt: skip
    r = maintainer.post("/api/projects/scans/datasets/", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"created": ["scans:a-1", "scans:b"], "existing": []}
    assert Dataset.objects.get(slug="scans:b").base_file_path == "raw/b"
    assert Attribute.objects.get(key="n").integer == 3
    assert Attribute.objects.get(key="at").display == "1.5, 2.0"
    r = maintainer.post("/api/projects/scans/datasets/", [*body, {"name": "c"}], format="json")
    assert r.json() == {"created": ["scans:c"], "existing": ["scans:a-1", "scans:b"]}
    assert Dataset.objects.count() == 3 and Attribute.objects.count() == 2


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        ({"name": "x", "base_file_path": "../etc"},
         "Dataset 'x': The folder '../etc' holds '..'; give a folder inside the storage."),
        ({"name": "x", "base_file_path": "crunch/other/one/inner"},
         "Dataset 'scans:x': the folder 'crunch/other/one/inner' overlaps the folder of dataset "
         "'other:one'; give each dataset a folder of its own."),
        ({"name": "x", "base_file_path": "crunch"},
         "Dataset 'scans:x': the folder 'crunch' overlaps the folder of dataset "
         "'other:one'; give each dataset a folder of its own."),
    ],
)  # fmt: skip
def test_register_refuses_unsafe_or_overlapping_folders(maintainer, entry, detail):
    make_project(name="Scans")
    make_dataset(make_project(name="Other"), name="one")
    r = maintainer.post("/api/projects/scans/datasets/", [entry], format="json")
    assert r.status_code == 400
    assert r.json()["datasets"] == [detail]
    assert Dataset.objects.count() == 1


def test_register_needs_a_maintainer(api):
    make_project(name="Scans", is_public=True)
    r = api.post("/api/projects/scans/datasets/", [{"name": "x"}], format="json")
    assert r.status_code == 403 and not Dataset.objects.exists()


def test_why_names_what_holds_a_dataset(api):
    from django.utils import timezone

    from crunch.services import claims

    project = make_project(name="P", is_public=True, max_attempts=3)
    first = make_dataset(project, name="first", priority=5)
    second = make_dataset(project, name="second")
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == (
        "Pending behind 1 dataset(s) of higher priority or older, "
        "but no live client is working on project 'p'."
    )
    assert why["command"] == "crunch loop --project p"
    claims.claim_dataset(first, holder="me@node1")
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == "Pending and next in line; 1 client(s) are at work on project 'p'."
    Dataset.objects.filter(pk=second.pk).update(
        state="failed", attempts=3, note="Traceback\nValueError: bad"
    )
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"] == (
        'Failed 3 of 3 attempt(s): it is not retried by itself. The last note: "ValueError: bad".'
    )
    assert why["command"] == "crunch retry p:second"
    later = timezone.now() + timezone.timedelta(minutes=5)
    Dataset.objects.filter(pk=second.pk).update(state="pending", attempts=1, not_before=later)
    why = api.get(f"/api/datasets/{second.slug}/why/").json()
    assert why["reason"].startswith("Pending after failing 1 of 3 attempt(s); not to be retried")
    assert why["command"] == "crunch run p:second"
    why = api.get(f"/api/datasets/{first.slug}/why/").json()
    assert why["reason"].startswith("Running on host unknown (me@node1) since ")


def test_overview_counts_clients_by_job_and_groups_failures(api):
    from crunch.services import claims, statuses

    project = make_project(name="P", is_public=True)
    for name in ("a", "b"):
        make_dataset(project, name=name, state="failed", note=f"x\nOSError: {name}")
    make_dataset(project, name="c", state="failed", note="OSError: a")
    running = make_dataset(project, name="r")
    claim = claims.claim_dataset(running, holder="h")
    statuses.record_status(
        dataset=running, stage=1, state=1, claim_id=claim.id,
        diagnostics={"slurm_job_id": "77", "slurm_array_task_id": "2"},
    )  # fmt: skip
    body = api.get("/api/projects/p/overview/").json()
    assert body["failed"] == 3 and body["running"] == 1
    assert body["live_clients"] == 1 and body["clients_by_job"] == {"77": 1}
    assert [(f["count"], f["note"]) for f in body["failures"]] == [
        (1, "OSError: a"), (1, "OSError: a"), (1, "OSError: b"),
    ]  # fmt: skip


def test_register_stores_each_kind_as_the_serializers_read_it(maintainer):
    """Plain values take the fast path, others (text numbers, dates) the fields: same rows."""
    make_project(name="Scans")
    values = {
        "char": (" padded ", "padded"), "url": ("https://x.org/a", "https://x.org/a"),
        "int": (7, 7), "filesize": ("1024", 1024), "float": (2.5, 2.5),
        "bool": (True, True), "date": ("2024-03-01", datetime.date(2024, 3, 1)),
        "datetime": ("2024-03-01T10:00:00Z", datetime.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        "latlong": ([45.5, -73.5], (45.5, -73.5)),
    }  # fmt: skip
    attributes = [{"key": kind, "kind": kind, "value": sent} for kind, (sent, _) in values.items()]
    body = [
        {"name": "Crème", "priority": 3, "attributes": attributes},
        {"name": "two", "description": " d ", "attributes": [{**attributes[2], "value": 8.0}]},
    ]
    r = maintainer.post("/api/projects/scans/datasets/", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["created"] == ["scans:creme", "scans:two"]
    creme = Dataset.objects.get(slug="scans:creme")
    assert (creme.name, creme.priority, creme.base_file_path) == ("Crème", 3, "crunch/scans/creme")
    assert (creme.state, creme.attempts, creme.created is not None) == ("pending", 0, True)
    assert {a.key: a.value for a in creme.attributes.all()} == {
        k: v for k, (_, v) in values.items()
    }
    two = Dataset.objects.get(slug="scans:two")
    assert two.description == "d" and two.attributes.get().value == 8


X = "Dataset 0 of the list ('x'): "


def attribute(kind, value):
    return [{"name": "x", "attributes": [{"key": "k", "kind": kind, "value": value}]}]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"name": "x"}, {"non_field_errors": ['Expected a list of items but got type "dict".']}),
        ([], {"non_field_errors": ["This list may not be empty."]}),
        ([{"name": "x"}] * 5001,
         {"non_field_errors": ["Ensure this field has no more than 5000 elements."]}),
        ([{"name": "ok"}, "x"],
         ["Dataset 1 of the list: Invalid data. Expected a dictionary, but got str."]),
        ([{"name": " "}], ["Dataset 0 of the list (' '): name: This field may not be blank."]),
        ([{"description": "d"}], ["Dataset 0 of the list: name: This field is required."]),
        ([{"name": "x", "priority": 2**40}],
         [X + "priority: Ensure this value is less than or equal to 2147483647."]),
        (attribute("int", "three"), [X + "attributes[0].value: A valid integer is required."]),
        (attribute("colour", 1),
         [X + "attributes[0].kind: 'colour' is not one of "
          "char, int, float, bool, date, datetime, url, filesize, latlong."]),
        (attribute("latlong", [91.0, 0.0]),
         [X + "attributes[0].value: Ensure this value is less than or equal to 90."]),
        (attribute("float", 10**400),
         [X + "attributes[0].value: Integer value too large to convert to float"]),
        (attribute("date", "March"), [X + "attributes[0].value: Date has wrong format. "
          "Use one of these formats instead: YYYY-MM-DD."]),
        ([{"name": "x", "attributes": {"key": "f"}}],
         [X + 'attributes: Expected a list of items but got type "dict".']),
        ([{"name": f"n{i}", "priority": "high"} for i in range(12)],
         [*(f"Dataset {i} of the list ('n{i}'): priority: A valid integer is required."
            for i in range(10)), "... and 2 more."]),
    ],
)  # fmt: skip
def test_register_refuses_bad_input_naming_each_dataset(maintainer, body, detail):
    make_project(name="Scans")
    r = maintainer.post("/api/projects/scans/datasets/", body, format="json")
    assert r.status_code == 400, r.content
    expected = detail if isinstance(detail, dict) else {"datasets": detail}
    assert {key: r.json()[key] for key in expected} == expected
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("bound", [None, 3])
def test_register_checks_folders_against_stored_ones_exactly(maintainer, monkeypatch, bound):
    """Same rule as loading every folder: equal, above or inside, case-sensitive, in a batch;
    also when the database binds so few values that the lookup takes several queries."""
    if bound:
        monkeypatch.setattr(registration, "PARAMETERS", 2)
        monkeypatch.setattr(registration, "_parameter_limit", lambda: bound)
    scans = make_project(name="Scans")
    rng = random.Random(13)
    words = ["a", "b", "A", "B", "ab", "a-b", "a.b", "c", "d", "e"]
    stored = {"/".join(rng.choices(words, k=rng.randint(2, 3))) for _ in range(10)}
    for i, path in enumerate(sorted(stored)):
        make_dataset(scans, name=f"s{i}", base_file_path=path)
    outcomes: list[bool] = []
    for attempt in range(60):
        paths = ["/".join(rng.choices(words, k=rng.randint(2, 4))) for _ in range(3)]
        body = [{"name": f"n{attempt}-{i}", "base_file_path": p} for i, p in enumerate(paths)]
        r = maintainer.post("/api/projects/scans/datasets/", body, format="json")
        everyone = [*stored, *paths]
        clash = len(set(paths)) < 3 or any(
            p == q or p.startswith(q + "/") or q.startswith(p + "/")
            for i, p in enumerate(paths)
            for j, q in enumerate(everyone)
            if j != len(stored) + i
        )
        assert r.status_code == (400 if clash else 200), (paths, r.content)
        stored.update(paths if not clash else [])
        outcomes.append(clash)
    assert Dataset.objects.count() == len(stored)
    assert 10 < sum(outcomes) < 50  # both kinds of batch were tried
