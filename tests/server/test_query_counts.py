"""A claim and a status post each cost at most four SQL queries, token included,
whatever the number of datasets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crunch.services import claims
from tests.clientkit import SIX
from tests.factories import bulk_datasets, make_project, make_user

# Transactions of their own, as in production: no test savepoints in the counts.
pytestmark = pytest.mark.django_db(transaction=True)

MAX_QUERIES = 4
CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b")


@contextmanager
def at_most_queries(limit: int) -> Iterator[None]:
    """Fail when the block runs more than ``limit`` SQL statements.

    Transaction control (SQLite's BEGIN IMMEDIATE and COMMIT, savepoints) is not counted:
    it frames the statements and costs no lookup.
    """
    with CaptureQueriesContext(connection) as captured:
        yield
    statements = [q["sql"] for q in captured.captured_queries if not CONTROL.match(q["sql"])]
    assert len(statements) <= limit, "\n\n".join(statements)


@pytest.mark.parametrize("size", [10, 10_000])
@pytest.mark.parametrize("scoped", [False, True])
def test_a_claim_and_each_status_take_at_most_four_queries(size, scoped):
    project = make_project(name="Q")
    make_project(name="Other")
    bulk_datasets(project, size)
    _, token = make_user("node", role="worker", projects=[project])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    claims.reclaim_expired()  # the sweep runs every few seconds, not as part of each claim
    path = "/api/projects/q/next/" if scoped else "/api/next/"
    with at_most_queries(MAX_QUERIES):
        r = api.post(path, {"holder": "node", "key": "k1"}, format="json")
    assert r.status_code == 200, r.content
    claim, dataset = r.json()["claim"]["id"], r.json()["dataset"]["id"]
    for n, (stage, state) in enumerate(SIX):
        body = {"dataset": dataset, "stage": stage, "state": state, "claim": claim, "key": f"s{n}"}
        with at_most_queries(MAX_QUERIES):
            r = api.post("/api/statuses/", body, format="json")
        assert r.status_code == 201, r.content
    assert r.json()["dataset_state"] == "completed"


@pytest.mark.parametrize("size", [10, 10_000])
def test_a_batch_of_one_claims_statuses_takes_four_queries_however_long(size):
    project = make_project(name="Q")
    bulk_datasets(project, size)
    _, token = make_user("node", role="worker", projects=[project])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    claims.reclaim_expired()
    r = api.post("/api/projects/q/next/", {"holder": "node", "start": {}}, format="json")
    assert r.status_code == 200 and r.json()["started"] is True, r.content
    claim, dataset = r.json()["claim"]["id"], r.json()["dataset"]["id"]
    batch = [
        {"dataset": dataset, "stage": stage, "state": state, "claim": claim, "key": f"b{n}"}
        for n, (stage, state) in enumerate(SIX[1:])
    ]
    with at_most_queries(MAX_QUERIES):
        r = api.post("/api/statuses/batch/", batch, format="json")
    assert r.status_code == 201, r.content
    assert [s["dataset_state"] for s in r.json()][-1] == "completed"
