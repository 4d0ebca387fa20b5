"""Exports of results, byte for byte, and Parquet through pyarrow."""

from __future__ import annotations

import datetime
import io

import pyarrow.parquet as pq
import pytest

from crunch.services import result_export
from crunch.services.result_export import MissingExtra, csv_chunks, jsonl_chunks, write_parquet
from crunch.services.results import store, table
from tests.server.results_kit import survey

pytestmark = pytest.mark.django_db

CSV = (
    "dataset,state,at,day,ok,score,site,where_lat,where_lon,words\n"
    "survey:d0,completed,2024-05-01T12:00:00Z,2024-05-01,true,0.5,north,1.5,-2.25,10\n"
    "survey:d1,completed,,,false,0.95,south,,,20\n"
    'survey:d2,completed,,,,1e-05,"north, ""east""",-10.0,100.0,30\n'
    "survey:d3,pending,,,,,,,,\n"
)
JSONL = (
    '{"dataset":"survey:d0","state":"completed","at":"2024-05-01T12:00:00Z","day":"2024-05-01",'
    '"ok":true,"score":0.5,"site":"north","where":{"lat":1.5,"lon":-2.25},"words":10}\n'
    '{"dataset":"survey:d1","state":"completed","at":null,"day":null,"ok":false,"score":0.95,'
    '"site":"south","where":null,"words":20}\n'
    '{"dataset":"survey:d2","state":"completed","at":null,"day":null,"ok":null,"score":1e-05,'
    '"site":"north, \\"east\\"","where":{"lat":-10.0,"lon":100.0},"words":30}\n'
    '{"dataset":"survey:d3","state":"pending","at":null,"day":null,"ok":null,"score":null,'
    '"site":null,"where":null,"words":null}\n'
)


def test_csv_byte_for_byte() -> None:
    project, _ = survey()
    assert b"".join(csv_chunks(table(project))) == CSV.encode()


def test_jsonl_byte_for_byte() -> None:
    project, _ = survey()
    assert b"".join(jsonl_chunks(table(project))) == JSONL.encode()


def test_csv_of_chosen_columns_filtered_and_sorted() -> None:
    project, datasets = survey()
    store(datasets["d3"], {"site": "é\u2028ü", "words": 5})
    chosen = table(project, columns="words,site", where=["words<25"], sort="-words")
    assert b"".join(csv_chunks(chosen)).decode() == (
        "dataset,state,words,site\n"
        "survey:d1,completed,20,south\n"
        "survey:d0,completed,10,north\n"
        "survey:d3,pending,5,é\u2028ü\n"
    )


def test_an_empty_selection_still_has_its_header() -> None:
    project, _ = survey()
    chosen = table(project, where=["words>100"], columns=["words"])
    assert b"".join(csv_chunks(chosen)) == b"dataset,state,words\n"
    assert b"".join(jsonl_chunks(chosen)) == b""


def test_chunks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = survey()
    monkeypatch.setattr(result_export, "FLUSH", 100)
    chunks = list(csv_chunks(table(project)))
    assert len(chunks) > 1
    assert b"".join(chunks) == CSV.encode()


def test_parquet_round_trips_through_pyarrow(tmp_path: object) -> None:
    project, _ = survey()
    buffer = io.BytesIO()
    assert write_parquet(table(project), buffer) == 4
    read = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert read.column_names == [
        "dataset", "state", "at", "day", "ok", "score", "site", "where_lat", "where_lon", "words",
    ]  # fmt: skip
    assert str(read.schema.field("words").type) == "int64"
    assert str(read.schema.field("at").type) == "timestamp[us, tz=UTC]"
    rows = read.to_pylist()
    assert rows[0] == {
        "dataset": "survey:d0", "state": "completed",
        "at": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 5, 1), "ok": True, "score": 0.5, "site": "north",
        "where_lat": 1.5, "where_lon": -2.25, "words": 10,
    }  # fmt: skip
    assert rows[3]["words"] is None and rows[3]["state"] == "pending"


def test_parquet_in_record_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = survey()
    monkeypatch.setattr(result_export, "BATCH", 3)
    buffer = io.BytesIO()
    assert write_parquet(table(project), buffer) == 4
    parquet = pq.ParquetFile(io.BytesIO(buffer.getvalue()))
    assert parquet.metadata.num_rows == 4
    assert parquet.metadata.num_row_groups == 2  # a batch of 3, then the last row
    assert parquet.read().column("words").to_pylist() == [10, 20, 30, None]


def test_parquet_without_pyarrow_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = survey()
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    with pytest.raises(MissingExtra) as raised:
        write_parquet(table(project), io.BytesIO())
    assert str(raised.value) == "Parquet needs pyarrow: pip install 'django-crunch[parquet]'."
