"""``crunchclient.results()``: the server's typed rows, over HTTP, as
``crunch.services.results`` gives them without HTTP."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest

import crunchclient
from crunch.services import results as server_results
from crunchclient import ConfigurationError, LatLon, NotFound, ResultRow, ServerError
from crunchclient.server.results import kinds_of, typed_row
from tests.clientkit import Crunch
from tests.server.results_kit import survey

pytestmark = pytest.mark.django_db(transaction=True)


def plain(rows: object) -> list[tuple[str, str, dict[str, object]]]:
    return [(row.dataset, row.state, row.values) for row in rows]  # type: ignore[attr-defined]


def test_a_record_is_typed_by_its_columns_kinds() -> None:
    kinds = kinds_of("at:datetime,day:date,ok:bool,score:float,site:char,where:latlong,words:int")
    record = json.loads(
        '{"dataset":"survey:d0","state":"completed","at":"2024-05-01T12:00:00Z",'
        '"day":"2024-05-01","ok":true,"score":10,"site":"2024-05-01x","where":'
        '{"lat":1.5,"lon":-2},"words":null}'
    )
    row = typed_row(record, kinds)
    assert row == ResultRow(
        dataset="survey:d0", state="completed",
        values={
            "at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
            "day": datetime.date(2024, 5, 1), "ok": True, "score": 10.0,
            "site": "2024-05-01x", "where": LatLon(1.5, -2.0),
        },
    )  # fmt: skip
    assert isinstance(row.values["score"], float)
    assert row.values["where"] == (1.5, -2.0)  # a pair
    assert "words" not in row.values  # not reported: absent, as on the server


def test_a_kind_this_client_does_not_know_is_one_line() -> None:
    with pytest.raises(ServerError) as raised:
        kinds_of("score:float,link:url")
    assert str(raised.value) == (
        "The server sent the result 'link' as a 'url', a kind this client does not know "
        "(char, int, float, bool, date, datetime, latlong): upgrade django-crunch here."
    )


def test_results_over_http_equal_the_servers_rows(crunch: Crunch) -> None:
    project, _ = survey()
    given = {"url": crunch.url, "token": crunch.token}
    assert plain(crunchclient.results("survey", **given)) == plain(server_results(project))
    chosen = {"where": ["words>=20", "site~o"], "sort": "-score", "columns": ["score", "words"]}
    found = list(crunchclient.results("survey", **given, **chosen))  # type: ignore[arg-type]
    assert plain(found) == plain(server_results(project, **chosen))  # type: ignore[arg-type]
    assert plain(found) == [
        ("survey:d1", "completed", {"score": 0.95, "words": 20}),
        ("survey:d2", "completed", {"score": 1e-05, "words": 30}),
    ]
    one = list(crunchclient.results("survey", where="ok=true", columns="at,where", **given))
    assert plain(one) == [
        ("survey:d0", "completed", {
            "at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
            "where": LatLon(1.5, -2.25),
        }),
    ]  # fmt: skip


def test_a_bad_filter_or_a_hidden_project_raises_at_the_call(crunch: Crunch) -> None:
    survey()
    given = {"url": crunch.url, "token": crunch.token}
    with pytest.raises(ConfigurationError, match=r"^Unknown result 'scor' in 'scor>1'"):
        crunchclient.results("survey", where=["scor>1"], **given)  # before any next()
    with pytest.raises(NotFound, match=r"^No project has the slug 'nope'\."):
        crunchclient.results("nope", **given)


def test_a_notebook_reads_results_without_django_settings(crunch: Crunch) -> None:
    survey()
    code = (
        "import crunchclient\n"
        "for row in crunchclient.results('survey', where=['score>0.1'], sort='-score'):\n"
        "    print(row.dataset, sorted(row.values), row.values.get('where'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=crunch.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "survey:d1 ['ok', 'score', 'site', 'words'] None",
        "survey:d0 ['at', 'day', 'ok', 'score', 'site', 'where', 'words'] "
        "LatLon(lat=1.5, lon=-2.25)",
    ]
