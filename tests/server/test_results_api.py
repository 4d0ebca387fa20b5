"""Results in the API: the streamed table, the dataset list's filters, and who sees what."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crunch.services.results import store
from tests.factories import make_dataset, make_user
from tests.server.results_kit import survey
from tests.server.test_results_export import CSV, JSONL

pytestmark = pytest.mark.django_db


def client_of(token: str | None = None) -> APIClient:
    api = APIClient()
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_results_stream_as_csv_by_default_and_as_jsonl() -> None:
    survey(is_public=True)
    response = client_of().get("/api/projects/survey/results/")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="survey-results.csv"'
    assert body(response) == CSV.encode()
    assert response["Crunch-Result-Kinds"] == (
        "at:datetime,day:date,ok:bool,score:float,site:char,where:latlong,words:int"
    )
    response = client_of().get("/api/projects/survey/results/?format=jsonl")
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    assert body(response) == JSONL.encode()


def test_results_filtered_sorted_and_of_chosen_columns() -> None:
    survey(is_public=True)
    response = client_of().get(
        "/api/projects/survey/results/",
        {"where": ["words>=20", "site~o"], "sort": "-score", "columns": "score,words"},
    )
    assert body(response) == (
        b"dataset,state,score,words\nsurvey:d1,completed,0.95,20\nsurvey:d2,completed,1e-05,30\n"
    )
    assert response["Crunch-Result-Kinds"] == "score:float,words:int"  # the columns', in order


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"where": "nope>1"}, "Unknown result 'nope' in 'nope>1': the project's results are "
         "at, day, ok, score, site, where, words."),
        ({"where": "score>high"}, "'score' is a float result; 'score>high' compares it with "
         "'high': give a number."),
        ({"sort": "-where"}, "'where' is a lat-long result: it can be shown, not filtered or "
         "sorted."),
        ({"columns": "x"}, "Unknown result 'x' in the columns: the project's results are at, "
         "day, ok, score, site, where, words."),
        ({"format": "xml"}, "Invalid input. format: Unknown format 'xml'; use one of csv, jsonl."),
    ],
)  # fmt: skip
def test_bad_requests_answer_400_in_one_line(query: dict[str, str], detail: str) -> None:
    survey(is_public=True)
    response = client_of().get("/api/projects/survey/results/", query)
    assert response.status_code == 400
    assert response.json()["detail"] == detail


def test_a_private_projects_results_are_its_viewers_only() -> None:
    project, _ = survey()
    _, viewer = make_user("viewer", role="viewer", projects=[project])
    _, outsider = make_user("outsider")
    assert client_of(viewer).get("/api/projects/survey/results/").status_code == 200
    for token in (None, outsider):
        for query in ({}, {"where": "score>0.9"}, {"where": "nope>1"}, {"sort": "-where"}):
            hidden = client_of(token).get("/api/projects/survey/results/", query)
            missing = client_of(token).get("/api/projects/nothing/results/", query)
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["detail"] == "No project has the slug 'survey'."
            assert missing.json()["detail"] == "No project has the slug 'nothing'."


def test_the_dataset_list_filters_sorts_and_shows_results() -> None:
    survey(is_public=True)
    response = client_of().get(
        "/api/datasets/",
        {"project": "survey", "where": "score>0.4", "sort": "-score", "columns": "score,where"},
    )
    assert response.status_code == 200, response.content
    shown = [(row["slug"], row["results"]) for row in response.json()["results"]]
    assert shown == [
        ("survey:d1", {"score": 0.95}),
        ("survey:d0", {"score": 0.5, "where": {"lat": 1.5, "lon": -2.25}}),
    ]


def test_a_dataset_shows_all_its_results() -> None:
    survey(is_public=True)
    response = client_of().get("/api/datasets/survey:d0/")
    assert response.json()["results"] == {
        "at": "2024-05-01T12:00:00Z", "day": "2024-05-01", "ok": True, "score": 0.5,
        "site": "north", "where": {"lat": 1.5, "lon": -2.25}, "words": 10,
    }  # fmt: skip


def test_the_dataset_list_needs_a_visible_project_to_filter() -> None:
    survey()
    _, outsider = make_user("outsider")
    response = client_of(outsider).get("/api/datasets/", {"where": "score>1"})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Invalid input. project: Filters, sorts and columns of results need ?project=<slug>."
    )
    for project in ("survey", "nothing"):
        response = client_of(outsider).get("/api/datasets/", {"project": project, "sort": "-nope"})
        assert response.status_code == 404
        assert response.json()["detail"] == f"No project has the slug {project!r}."


def test_the_filtered_list_costs_the_same_queries_whatever_its_length() -> None:
    project, _ = survey(is_public=True)
    query = {"project": "survey", "where": ["words>0", "site~o"], "sort": "-score"}
    with CaptureQueriesContext(connection) as few:
        assert client_of().get("/api/datasets/", query).status_code == 200
    for i in range(40):
        store(make_dataset(project, name=f"e{i}"), {"words": i + 1, "site": "o", "score": 0.1})
    with CaptureQueriesContext(connection) as many:
        response = client_of().get("/api/datasets/", query)
    assert response.json()["count"] == 43
    assert len(many) == len(few), [q["sql"][:90] for q in many]


def test_pages_sorted_by_a_result_end_with_the_datasets_without_it() -> None:
    """Pages are read a window at a time (no sort of every dataset): every dataset comes
    once, in order, across the page where those with the key give way to those without."""
    project, _ = survey(is_public=True)
    for i in range(150):  # 150 more with a score, 60 more without
        store(make_dataset(project, name=f"s{i:03d}"), {"score": i / 1000})
    for i in range(60):
        make_dataset(project, name=f"n{i:03d}")
    rows: list[dict[str, Any]] = []
    for number in (1, 2, 3):
        page = (
            client_of()
            .get("/api/datasets/", {"project": "survey", "sort": "-score", "page": number})
            .json()
        )
        assert page["count"] == 214
        rows += page["results"]
    scored = [row["results"]["score"] for row in rows if "score" in row["results"]]
    assert scored == sorted(scored, reverse=True) and len(scored) == 153
    assert all("score" not in row["results"] for row in rows[153:])
    without = [row["slug"] for row in rows[153:]]
    assert len(without) == 61 and len({row["slug"] for row in rows}) == 214
    assert without[0] == "survey:n059" and without[-1] == "survey:d3"  # by id, descending
    filtered = (
        client_of()
        .get("/api/datasets/", {"project": "survey", "sort": "-score", "where": "score<0.01"})
        .json()
    )
    assert filtered["count"] == 11  # s000..s009 and d2
    assert [row["results"]["score"] for row in filtered["results"]][-3:] == [0.001, 1e-05, 0.0]


def test_the_schema_describes_results_and_the_lists_filters() -> None:
    schema = client_of().get("/api/schema/?format=json").json()
    results = schema["paths"]["/api/projects/{slug}/results/"]["get"]
    assert {p["name"] for p in results["parameters"]} >= {"format", "where", "columns", "sort"}
    assert set(results["responses"]["200"]["content"]) == {"text/csv", "application/jsonl"}
    listing = schema["paths"]["/api/datasets/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"project", "where", "sort", "columns"}
