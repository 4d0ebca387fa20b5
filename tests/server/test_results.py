"""Storing results (checked, typed, replaced), and reading them filtered and sorted.

Run on SQLite and, with DATABASE_URL=postgres://..., on PostgreSQL: the filters and sorts
must answer the same on both.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crunch.exceptions import InvalidFilter, InvalidResults
from crunch.models import LatLon, Result, ResultKey
from crunch.services import results
from crunch.services.result_filters import Where
from crunch.services.result_summary import summary
from crunch.services.results import ResultRow, store, values_of, version
from tests.factories import make_dataset
from tests.server.results_kit import survey

pytestmark = pytest.mark.django_db


def slugs(rows: Any) -> list[str]:
    return [row.dataset.split(":")[1] for row in rows]


def test_results_are_stored_typed_and_read_back() -> None:
    project, datasets = survey()
    assert values_of(datasets["d0"]) == {
        "at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 5, 1),
        "ok": True,
        "score": 0.5,
        "site": "north",
        "where": LatLon(1.5, -2.25),
        "words": 10,
    }
    kinds = dict(project.result_keys.values_list("name", "kind"))
    assert kinds == {
        "at": "datetime", "day": "date", "ok": "bool", "score": "float", "site": "char",
        "where": "latlong", "words": "int",
    }  # fmt: skip


def test_integers_round_trip_exactly() -> None:
    project, datasets = survey()
    big = 2**63 - 1
    store(datasets["d3"], {"words": big})
    assert values_of(datasets["d3"]) == {"words": big}
    assert next(results(project, where=[f"words={big}"])).values["words"] == big


def test_a_store_replaces_the_datasets_results() -> None:
    project, datasets = survey()
    before = version(project)
    store(datasets["d0"], {"words": 11})
    assert values_of(datasets["d0"]) == {"words": 11}
    assert version(project) == before + 1
    store(datasets["d0"], {})
    assert values_of(datasets["d0"]) == {}
    assert values_of(datasets["d1"])["words"] == 20  # other datasets untouched


def test_a_kind_change_is_refused_naming_dataset_and_key() -> None:
    _, datasets = survey()
    with pytest.raises(InvalidResults) as raised:
        store(datasets["d3"], {"words": 5, "score": "high"})
    assert str(raised.value) == (
        "Results of dataset 'survey:d3': 'score' is a text, but the project's 'score' is a "
        "float (fixed by its first value): report the same kind, or use another key."
    )
    assert values_of(datasets["d3"]) == {}  # nothing of the refused results kept


def test_an_integer_widens_to_a_float_key_but_not_back() -> None:
    _, datasets = survey()
    store(datasets["d3"], {"score": 1})
    assert values_of(datasets["d3"]) == {"score": 1.0}
    with pytest.raises(
        InvalidResults, match="'words' is a float, but the project's 'words' is an integer"
    ):
        store(datasets["d3"], {"words": 1.5})


def test_a_new_key_may_not_take_a_lat_long_columns_name() -> None:
    project, datasets = survey()
    with pytest.raises(InvalidResults, match="'where_lat' would share the exported column"):
        store(datasets["d3"], {"where_lat": 1.0})
    assert not project.result_keys.filter(name="where_lat").exists()


INVALID = [
    ({f"k{i}": i for i in range(201)}, "201 keys; at most 200 are allowed."),
    ({"a-b": 1}, "the key 'a-b' is not an identifier"),
    ({"<b>x</b>": 1}, "the key '<b>x</b>' is not an identifier"),
    ({"9lives": 1}, "the key '9lives' is not an identifier"),
    ({"x" * 65: 1}, "is not an identifier"),
    ({"state": "done"}, "the key 'state' is reserved"),
    ({"x": {"a": 1}}, '\'x\' is an object; only {"lat": .., "lon": ..} may be nested.'),
    ({"x": {"lat": 1, "lon": 2, "z": 3}}, "'x' is an object"),
    ({"x": {"lat": 91, "lon": 0}}, "'x''s lat 91 is not between -90 and 90."),
    ({"x": {"lat": 0, "lon": math.nan}}, "'x''s lon nan is not between -180 and 180."),
    ({"x": math.nan}, "'x' is nan; report finite numbers only."),
    ({"x": math.inf}, "'x' is inf; report finite numbers only."),
    ({"x": 2**63}, "'x' 9223372036854775808 does not fit in 64 bits."),
    ({"x": "a" * 1001}, "'x' is a text of 1001 characters; at most 1000."),
    ({"x": "€" * 700}, "'x' is a text of more than 2000 bytes in UTF-8."),
    ({"x": "line\nbreak"}, "'x' holds the control character '\\n'."),
    ({"x": "nul\x00"}, "'x' holds the control character '\\x00'."),
    ({"x": "2024-02-30"}, "'x' '2024-02-30' is not a valid date."),
    ({"x": "2024-02-01T25:00"}, "'x' '2024-02-01T25:00' is not a valid date and time."),
    ({"x": None}, "'x' is null; leave the key out instead."),
    ({"x": [1, 2]}, "'x' is a list; report a number"),
    ({f"k{i}": "x" * 999 for i in range(70)}, "bytes as JSON; at most 65,536 are allowed."),
]


@pytest.mark.parametrize(("values", "message"), INVALID, ids=[m[:30] for _, m in INVALID])
def test_invalid_results_are_refused_and_nothing_changes(values: Any, message: str) -> None:
    _, datasets = survey()
    with pytest.raises(InvalidResults) as raised:
        store(datasets["d0"], values)
    text = str(raised.value)
    assert text.startswith("Results of dataset 'survey:d0': ")
    assert message in text
    assert "\n" not in text
    assert values_of(datasets["d0"])["words"] == 10


def test_results_that_are_not_an_object_are_refused() -> None:
    dataset = make_dataset()
    with pytest.raises(InvalidResults, match="a list, not an object of keys and values"):
        store(dataset, [1, 2])  # type: ignore[arg-type]


def test_a_store_costs_a_few_queries_whatever_the_number_of_keys() -> None:
    _, datasets = survey()
    values = {f"k{i}": float(i) for i in range(200)}
    store(datasets["d1"], values)  # creates the keys
    with CaptureQueriesContext(connection) as queries:
        store(datasets["d0"], values)
    # keys, savepoint, delete, one insert (a prepared statement run over the rows; on
    # PostgreSQL a COPY, which Django does not count), version, release
    assert len(queries) == (6 if connection.vendor == "sqlite" else 5), [
        query["sql"][:80] for query in queries
    ]


FILTERS = [
    (["score>0.9"], None, ["d1"]),
    (["score>=1e-05"], None, ["d0", "d1", "d2"]),
    (["score<0.5"], None, ["d2"]),
    (["score<=0.5"], "score", ["d2", "d0"]),
    (["score!=0.5"], None, ["d1", "d2"]),
    (["words=20"], None, ["d1"]),
    (["words>10", "words<30"], None, ["d1"]),
    (["site=north"], None, ["d0"]),
    (["site~north"], "-words", ["d2", "d0"]),
    (["site~North"], None, []),
    (['site~"east"'], None, ["d2"]),
    (["site>n"], "slug", ["d0", "d1", "d2"]),
    (["ok=true"], None, ["d0"]),
    (["ok!=true"], None, ["d1"]),
    (["day>=2024-05-01"], None, ["d0"]),
    (["at<2024-05-01T13:00:00+00:00"], None, ["d0"]),
    (["at>2024-05-01T12:00:00"], None, []),
    ([" score > 0.4 ", "site=north"], None, ["d0"]),
    ([], "-score", ["d1", "d0", "d2", "d3"]),
    ([], "score", ["d2", "d0", "d1", "d3"]),
    ([], "-ok", ["d0", "d1", "d3", "d2"]),
    ([], "-slug", ["d3", "d2", "d1", "d0"]),
    (["words>0"], "-words", ["d2", "d1", "d0"]),
    (["site=north"], "-score", ["d0"]),
]


@pytest.mark.parametrize(("where", "sort", "expected"), FILTERS)
def test_filters_and_sorts(where: list[str], sort: str | None, expected: list[str]) -> None:
    project, _ = survey()
    assert slugs(results(project, where=where, sort=sort)) == expected


def test_ties_go_by_id_in_the_sorts_direction() -> None:
    project, datasets = survey()
    for name in ("d3", "d1"):
        store(datasets[name], {"words": 10})
    assert slugs(results(project, sort="words", where=["words<=10"])) == ["d0", "d1", "d3"]
    assert slugs(results(project, sort="-words", where=["words<=10"])) == ["d3", "d1", "d0"]
    assert slugs(results(project, sort="-words")) == ["d2", "d3", "d1", "d0"]


def test_rows_are_typed_with_the_columns_asked_for_in_order() -> None:
    project, _ = survey()
    rows = list(results(project, columns="where,words", where=["words<=20"]))
    assert rows == [
        ResultRow(
            dataset="survey:d0", state="completed",
            values={"where": LatLon(1.5, -2.25), "words": 10},
        ),
        ResultRow(dataset="survey:d1", state="completed", values={"words": 20}),
    ]  # fmt: skip
    assert list(rows[0].values) == ["where", "words"]


def test_rows_stream_in_chunks_with_a_bounded_number_of_queries() -> None:
    project, _ = survey()
    for i in range(30):
        store(make_dataset(project, name=f"e{i}"), {"words": i, "where": {"lat": 0, "lon": i}})
    rows = results(project, chunk_size=10, sort="-words")
    with CaptureQueriesContext(connection) as queries:
        assert len(list(rows)) == 34
    # 4 chunks: the datasets query (read in chunks), and per chunk one query per value column
    assert len(queries) <= 1 + 4 * 7


BAD_FILTERS = [
    (
        "scor>1",
        "Unknown result 'scor' in 'scor>1': the project's results are at, day, ok, "
        "score, site, where, words.",
    ),
    (
        "score",
        "Cannot read the filter 'score': write KEY OPERATOR VALUE, the operator one of "
        "<= >= != = < > ~ (e.g. score>0.9).",
    ),
    (
        "score>high",
        "'score' is a float result; 'score>high' compares it with 'high': give a number.",
    ),
    ("score>nan", "'score' is a float result; 'score>nan' compares it with 'nan': give a number."),
    (
        "words>1.5",
        "'words' is an integer result; 'words>1.5' compares it with '1.5': give an integer.",
    ),
    ("ok=yes", "give true or false."),
    ("ok>true", "'ok>true': a boolean result takes '=' or '!=' only."),
    ("day<May", "give an ISO date (2024-05-01)."),
    ("at<soon", "give an ISO date and time (2024-05-01T12:00:00Z)."),
    ("score~1", "'score~1': '~' (contains) applies to text results only."),
    ("where>1", "'where' is a lat-long result: it can be shown, not filtered or sorted."),
]


@pytest.mark.parametrize(("where", "message"), BAD_FILTERS)
def test_bad_filters_are_refused_in_one_line(where: str, message: str) -> None:
    project, _ = survey()
    with pytest.raises(InvalidFilter) as raised:
        results(project, where=[where])
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_sorts_and_columns_are_refused() -> None:
    project, _ = survey()
    with pytest.raises(InvalidFilter, match="Cannot read the sort '--score'"):
        results(project, sort="--score")
    with pytest.raises(InvalidFilter, match="Unknown result 'nope' in '-nope'"):
        results(project, sort="-nope")
    with pytest.raises(InvalidFilter, match="Unknown result 'nope' in the columns"):
        results(project, columns="words,nope")


def test_a_project_without_results_says_so() -> None:
    dataset = make_dataset()
    with pytest.raises(InvalidFilter, match="the project has no results yet"):
        results(dataset.project, where=["score>1"])
    assert list(results(dataset.project)) == [
        ResultRow(dataset=dataset.slug, state="pending", values={})
    ]


def test_where_parses_key_operator_and_value() -> None:
    assert Where.parse("score>=0.9") == Where(key="score", operator=">=", value="0.9")
    assert Where.parse("site = a=b ") == Where(key="site", operator="=", value="a=b")
    assert Where.parse("name~") == Where(key="name", operator="~", value="")


def test_summary_figures_and_cache() -> None:
    project, datasets = survey()
    figures = {key.name: key for key in summary(project).keys}
    words = figures["words"]
    assert (words.count, words.minimum, words.median, words.maximum) == (3, 10, 20, 30)
    assert sum(words.bins) == 3 and words.bins[0] == 1 and words.bins[-1] == 1
    assert words.bin_edges[0] == 10 and words.bin_edges[-1] == 30
    assert figures["site"].top == [("north", 1), ('north, "east"', 1), ("south", 1)]
    assert figures["ok"].top == [(False, 1), (True, 1)]
    assert figures["day"].median == datetime.date(2024, 5, 1)
    assert sorted(figures["where"].points) == [(-10.0, 100.0), (1.5, -2.25)]
    with CaptureQueriesContext(connection) as queries:
        summary(project)
    assert len(queries) == 1  # the version, then the cache
    store(datasets["d3"], {"words": 40})
    assert {key.name: key for key in summary(project).keys}["words"].maximum == 40


def test_an_even_count_has_the_mean_of_the_middle_values_as_median() -> None:
    project, datasets = survey()
    store(datasets["d3"], {"words": 41})
    words = {key.name: key for key in summary(project).keys}["words"]
    assert words.median == 25.0


def test_deleting_a_dataset_deletes_its_results() -> None:
    project, datasets = survey()
    datasets["d0"].delete()
    assert not Result.objects.filter(dataset_id=datasets["d0"].pk).exists()
    assert ResultKey.objects.filter(project=project).count() == 7
