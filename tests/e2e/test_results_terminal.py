"""Results in the terminal: ``crunch ls --where/--sort/--columns`` and ``crunch export``
as real subprocesses against a live server; the files byte for byte as the expected ones
written here, Parquet through pyarrow, and what an interrupted export leaves behind."""

from __future__ import annotations

import datetime
import io
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from crunch.choices import DatasetState
from crunch.services.result_export import write_parquet
from crunch.services.results import store, table
from tests.clientkit import CRUNCH, Crunch, error_line, free_port
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)

COUNT = 240  # datasets; every tenth reported no results
SITES = ("north", "south", 'east, "far"')
HEADER = "dataset,state,day,score,site,where_lat,where_lon,words"


def values_of(i: int) -> dict[str, Any]:
    """Dataset i's results: scores tie every 100 datasets; every 7th has no place."""
    values: dict[str, Any] = {
        "words": (i * 37) % 1000,
        "score": ((i * 919) % 100) / 100,
        "site": SITES[i % 4 % 3],  # the same for i and i + 100
        "day": (datetime.date(2024, 1, 1) + datetime.timedelta(days=i)).isoformat(),
    }
    if i % 7:
        values["where"] = {"lat": (i % 180) - 89.5, "lon": (i % 360) - 179.25}
    return values


def reported(i: int) -> bool:
    return i % 10 != 3


def make_words() -> Any:
    """The private project 'words': COUNT datasets, results stored as the server stores them."""
    project = make_project(name="Words")
    for i in range(COUNT):
        state = DatasetState.COMPLETED if reported(i) else DatasetState.PENDING
        dataset = make_dataset(project, name=f"d{i}", state=state)
        if reported(i):
            store(dataset, values_of(i))
    return project


def field(value: Any) -> str:
    text = "" if value is None else repr(value) if isinstance(value, float) else str(value)
    return f'"{text.replace(chr(34), 2 * chr(34))}"' if any(c in text for c in ',"') else text


def expected_csv(order: list[int]) -> bytes:
    lines = [HEADER]
    for i in order:
        state, found = ("completed", values_of(i)) if reported(i) else ("pending", {})
        where = found.get("where") or {}
        cells = [f"words:d{i}", state, found.get("day"), found.get("score"), found.get("site"),
                 where.get("lat"), where.get("lon"), found.get("words")]  # fmt: skip
        lines.append(",".join(field(cell) for cell in cells))
    return ("\n".join(lines) + "\n").encode()


def expected_jsonl(order: list[int]) -> bytes:
    lines = []
    for i in order:
        state, found = ("completed", values_of(i)) if reported(i) else ("pending", {})
        record = {"dataset": f"words:d{i}", "state": state}
        record.update((key, found.get(key)) for key in ("day", "score", "site", "where", "words"))
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(lines).encode()


def chosen() -> list[int]:
    """``--where 'score>0.5' --where 'site=north' --sort -score``: ties by id, descending."""
    kept = [i for i in range(COUNT) if reported(i) and values_of(i)["score"] > 0.5]
    kept = [i for i in kept if values_of(i)["site"] == "north"]
    return sorted(kept, key=lambda i: (values_of(i)["score"], i), reverse=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


FILTERS = ("--where", "score>0.5", "--where", "site=north", "--sort", "-score")


def test_ls_filters_sorts_and_shows_the_columns_asked_for(crunch: Crunch) -> None:
    make_words()
    order = chosen()
    assert len(order) > 20
    assert len({values_of(i)["score"] for i in order}) < len(order)  # ties to order by id
    listed = json.loads(
        ok(crunch.run("ls", "--project", "words", *FILTERS, "--columns", "score,words", "--json"))
    )
    assert [row["slug"] for row in listed] == [f"words:d{i}" for i in order]
    assert [row["results"] for row in listed] == [
        {"score": values_of(i)["score"], "words": values_of(i)["words"]} for i in order
    ]
    text = ok(crunch.run("ls", "--project", "words", *FILTERS, "--columns", "words,score"))
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "state", "words", "score"]
    rows = [line.split() for line in lines[2:-1]]
    assert rows == [
        [f"words:d{i}", "completed", str(values_of(i)["words"]), repr(values_of(i)["score"])]
        for i in order
    ]
    assert lines[-1] == f"{len(order)} dataset(s)."
    # Without --columns: every result, by name; a lat-long as 'lat, lon'.
    text = ok(crunch.run("ls", "--project", "words", "--where", "words=37", "--state", "completed"))
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "state", "day", "score", "site", "where", "words"]
    assert lines[2].split() == [
        "words:d1", "completed", "2024-01-02", "0.19", "south", "-88.5,", "-178.25", "37",
    ]  # fmt: skip
    assert lines[3:] == ["1 dataset(s)."]


def test_export_csv_and_jsonl_byte_for_byte(crunch: Crunch) -> None:
    make_words()
    everything = list(range(COUNT))
    result = subprocess.run(
        [CRUNCH, "export", "--project", "words"], env=crunch.env,
        cwd=crunch.work, capture_output=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_csv(everything)
    assert ok(crunch.run("export", "--project", "words", "--format", "jsonl", "--dest", "r.jsonl"))
    assert (crunch.work / "r.jsonl").read_bytes() == expected_jsonl(everything)
    ok(crunch.run("export", "--project", "words", *FILTERS, "--dest", "chosen.csv"))
    assert (crunch.work / "chosen.csv").read_bytes() == expected_csv(chosen())
    assert sorted(p.name for p in crunch.work.iterdir()) == ["chosen.csv", "r.jsonl"]


def test_parquet_round_trips_through_pyarrow(crunch: Crunch) -> None:
    project = make_words()
    assert "Wrote " in ok(
        crunch.run("export", "--project", "words", "--format", "parquet", "--dest", "r.parquet")
    )
    read = pq.read_table(crunch.work / "r.parquet")
    assert read.column_names == HEADER.split(",")
    rows = read.to_pylist()
    assert [row["dataset"] for row in rows] == [f"words:d{i}" for i in range(COUNT)]
    assert rows[1] == {
        "dataset": "words:d1", "state": "completed", "day": datetime.date(2024, 1, 2),
        "score": 0.19, "site": "south", "where_lat": -88.5, "where_lon": -178.25, "words": 37,
    }  # fmt: skip
    assert rows[3]["state"] == "pending" and rows[3]["words"] is None
    server = io.BytesIO()
    write_parquet(table(project), server)  # the server's own Parquet of the same table
    assert read.equals(pq.read_table(io.BytesIO(server.getvalue())))
    # Through a pipe, with filters.
    piped = subprocess.run(
        [CRUNCH, "export", "--project", "words", "--format", "parquet", *FILTERS],
        env=crunch.env, cwd=crunch.work, capture_output=True, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    shown = pq.read_table(io.BytesIO(piped.stdout)).to_pylist()
    assert [row["dataset"] for row in shown] == [f"words:d{i}" for i in chosen()]


def test_parquet_without_pyarrow_says_which_extra(crunch: Crunch, tmp_path: Path) -> None:
    make_words()
    blocked = tmp_path / "no-pyarrow" / "pyarrow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    result = crunch.run(
        "export", "--project", "words", "--format", "parquet", "--dest", "r.parquet",
        env={**crunch.env, "PYTHONPATH": str(blocked.parent)},
    )  # fmt: skip
    assert result.returncode == 2
    assert error_line(result) == (
        "CommandError: Parquet needs pyarrow: pip install 'django-crunch[parquet]' "
        "(or export --format csv or jsonl)."
    )
    assert list(crunch.work.iterdir()) == []


@pytest.mark.parametrize("command", ["ls", "export"])
@pytest.mark.parametrize(
    ("where", "detail"),
    [
        ("scor>0.9", "Unknown result 'scor' in 'scor>0.9': the project's results are day, "
         "score, site, where, words."),
        ("score>high", "'score' is a float result; 'score>high' compares it with 'high': give "
         "a number."),
        ("score", "Cannot read the filter 'score': write KEY OPERATOR VALUE, the operator one "
         "of <= >= != = < > ~ (e.g. score>0.9)."),
    ],
)  # fmt: skip
def test_a_bad_filter_is_one_line_and_a_non_zero_exit(
    crunch: Crunch, command: str, where: str, detail: str
) -> None:
    make_words()
    dest = ["--dest", "x.csv"] if command == "export" else []
    result = crunch.run(command, "--project", "words", "--where", where, *dest)
    assert result.returncode == 2, result.stderr
    assert error_line(result) == f"CommandError: {detail}"
    assert result.stdout == ""
    assert list(crunch.work.iterdir()) == []


def test_a_viewer_exports_a_private_project_an_outsider_gets_not_found(crunch: Crunch) -> None:
    project = make_words()
    _, viewer = make_user("viewer", role="viewer", projects=[project])
    _, outsider = make_user("outsider", role="viewer", projects=[make_project(name="Other")])
    as_viewer = {**crunch.env, "CRUNCH_TOKEN": viewer}
    ok(crunch.run("export", "--project", "words", "--dest", "v.csv", env=as_viewer))
    assert (crunch.work / "v.csv").read_bytes() == expected_csv(list(range(COUNT)))
    as_outsider = {**crunch.env, "CRUNCH_TOKEN": outsider}
    for args in (
        ("export", "--project", "words"),
        ("export", "--project", "words", "--where", "score>0.9"),
        ("export", "--project", "words", "--where", "nope>1"),  # no schema leaks
        ("ls", "--project", "words", "--where", "score>0.9"),
    ):
        result = crunch.run(*args, env=as_outsider)
        assert result.returncode == 7, result.stderr
        assert error_line(result).startswith("CommandError: No project has the slug 'words'.")
        assert result.stdout == ""


# ---------------------------------------------------------------- interrupted exports


@contextmanager
def relay(upstream: str, *, cut_after: int | None = None, pause: float = 0.0) -> Iterator[str]:
    """A TCP relay to ``upstream`` (http://host:port) that sends the answer on in 1 KiB
    pieces, ``pause`` seconds apart, and closes both sides after ``cut_after`` bytes:
    a network that breaks mid-stream, or a slow one to interrupt."""
    host, port = upstream.removeprefix("http://").rstrip("/").split(":")
    listener = socket.create_server(("127.0.0.1", free_port()))
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket, limit: int | None, wait: float) -> None:
        sent = 0
        try:
            while data := source.recv(1024):
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    break
                sink.sendall(data)
                sent += len(data)
                time.sleep(wait)
        except OSError:
            pass
        for end in (source, sink):  # shut down first: that wakes the other pump's recv()
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection((host, int(port)))
            threading.Thread(target=pump, args=(client, server, None, 0), daemon=True).start()
            threading.Thread(
                target=pump, args=(server, client, cut_after, pause), daemon=True
            ).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_stream_cut_midway_leaves_the_old_file_whole(served_crunch: Crunch) -> None:
    crunch = served_crunch
    make_words()
    dest = crunch.work / "results.csv"
    dest.write_text("the previous export\n")
    with relay(crunch.url, cut_after=6000) as url:
        result = crunch.run(
            "export", "--project", "words", "--dest", "results.csv",
            env={**crunch.env, "CRUNCH_URL": url},
        )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "the export is incomplete; run it again." in error_line(result)
    assert dest.read_text() == "the previous export\n"
    assert sorted(p.name for p in crunch.work.iterdir()) == ["results.csv"]


def test_ctrl_c_midway_leaves_no_file(crunch: Crunch) -> None:
    make_words()
    with relay(crunch.url, pause=0.1) as url:  # about 3 s for the 32 KiB
        process = crunch.start(
            "export", "--project", "words", "--format", "jsonl", "--dest", "r.jsonl",
            env={**crunch.env, "CRUNCH_URL": url},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not list(crunch.work.glob("r.jsonl.*.partial")):  # the answer has begun
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "CommandError: Export interrupted: r.jsonl was not written."
    )
    assert list(crunch.work.iterdir()) == []
