"""Issue 29 end to end: workflows report results in $CRUNCH_RESULTS, two ``crunch loop``
processes complete a project of 1,000 datasets, and the terminal lists and exports exactly
the expected table; each invalid results file fails its dataset at Upload with a one-line
note and the reason ``results``, not retried, its files all stored.

Real subprocesses against gunicorn serving the test database, local storage."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from crunch.models import Dataset, Project, Status
from crunch.services.results import values_of as stored_values
from tests.clientkit import CRUNCH, SIX, Crunch, statuses
from tests.e2e.test_containers import CHARLIECLOUD, build_image
from tests.factories import bulk_datasets

pytestmark = pytest.mark.django_db(transaction=True)

COUNT = 1000
SITES = ("north", "south", "east", "west")
# One line of bash: the results of dataset dN, from N.
WRITER = (
    'n=${CRUNCH_DATASET##*:d}; n=$((10#$n)); s=(north south east west); printf \'{"words": '
    '%d, "score": 0.%03d, "site": "%s", "where": {"lat": %d.25, "lon": %d.5}}\\n\' '
    '$((n * 7 % 500)) $((n * 37 % 1000)) "${s[n % 4]}" $((n % 170 - 85)) $((n % 350 - 175)) '
    '> "$CRUNCH_RESULTS"\n'
)


def values_of(n: int) -> dict[str, Any]:
    """What the workflow of dataset n reports, computed here without bash."""
    return {
        "words": n * 7 % 500, "score": float(f"0.{n * 37 % 1000:03d}"), "site": SITES[n % 4],
        "where": {"lat": float(f"{n % 170 - 85}.25"), "lon": float(f"{n % 350 - 175}.5")},
    }  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
    return result.stdout


def csv_of(order: list[int], slug: str) -> bytes:
    lines = ["dataset,state,score,site,where_lat,where_lon,words"]
    for n in order:
        v = values_of(n)
        cells = [f"{slug}:d{n}", "completed", repr(v["score"]), v["site"],
                 repr(v["where"]["lat"]), repr(v["where"]["lon"]), str(v["words"])]  # fmt: skip
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def jsonl_of(order: list[int], slug: str) -> bytes:
    lines = []
    for n in order:
        v = values_of(n)
        record = {"dataset": f"{slug}:d{n}", "state": "completed", "score": v["score"],
                  "site": v["site"], "where": v["where"], "words": v["words"]}  # fmt: skip
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
    return "".join(lines).encode()


def test_a_thousand_datasets_by_two_loops_then_listed_and_exported(served_crunch: Crunch) -> None:
    crunch = served_crunch
    project = crunch.project("Survey", WRITER)
    slug = project["slug"]
    bulk_datasets(Project.objects.get(slug=slug), COUNT, prefix="d")  # d0 ... d999
    loop = ("loop", "--quiet", "--project", slug, "--isolation", "none")
    loops = [crunch.start(*loop), crunch.start(*loop)]
    processed = []
    for process in loops:
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, err[-3000:]
        summary = re.match(
            r"Processed (\d+) dataset\(s\): \1 completed, 0 failed", out.splitlines()[-1]
        )
        assert summary, out[-2000:]
        processed.append(int(summary.group(1)))
    assert sum(processed) == COUNT and min(processed) > 0  # both loops took their share
    assert Dataset.objects.filter(project__slug=slug, state="completed").count() == COUNT
    assert statuses(f"{slug}:d7") == SIX
    stored = crunch.stored(
        {"base_file_path": Dataset.objects.get(slug=f"{slug}:d7").base_file_path}
    )
    assert json.loads(stored[".crunch/results.json"]) == values_of(7)

    # ls: the filters and the sort, exactly the rows expected, in order (ties by id, descending).
    kept = [
        n for n in range(COUNT) if values_of(n)["score"] > 0.9 and values_of(n)["site"] == "north"
    ]
    order = sorted(kept, key=lambda n: (values_of(n)["score"], n), reverse=True)
    assert len(order) > 10
    listed = json.loads(ok(crunch.run(
        "ls", "--project", slug, "--columns", "words,score", "--where", "score>0.9",
        "--where", "site=north", "--sort", "-score", "--json",
    )))  # fmt: skip
    assert [row["slug"] for row in listed] == [f"{slug}:d{n}" for n in order]
    assert [row["results"] for row in listed] == [
        {"words": values_of(n)["words"], "score": values_of(n)["score"]} for n in order
    ]
    text = ok(crunch.run(
        "ls", "--project", slug, "--columns", "words,score", "--where", "score>0.9",
        "--where", "site=north", "--sort", "-score",
    ))  # fmt: skip
    rows = [line.split() for line in text.splitlines()[2:-1]]
    assert rows == [
        [f"{slug}:d{n}", "completed", str(values_of(n)["words"]), repr(values_of(n)["score"])]
        for n in order
    ]

    # export: CSV and JSON Lines byte for byte, Parquet through pyarrow.
    everything = list(range(COUNT))
    csv = subprocess.run(
        [CRUNCH, "export", "--project", slug, "--format", "csv"], env=crunch.env,
        cwd=crunch.work, capture_output=True, timeout=300,
    )  # fmt: skip
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout == csv_of(everything, slug)
    ok(crunch.run("export", "--project", slug, "--format", "jsonl", "--dest", "r.jsonl"))
    assert (crunch.work / "r.jsonl").read_bytes() == jsonl_of(everything, slug)
    chosen = ("--where", "score>0.9", "--where", "site=north", "--sort", "-score")
    ok(crunch.run("export", "--project", slug, "--format", "jsonl", *chosen, "--dest", "c.jsonl"))
    assert (crunch.work / "c.jsonl").read_bytes() == jsonl_of(order, slug)
    ok(crunch.run("export", "--project", slug, "--format", "parquet", "--dest", "r.parquet"))
    table = pq.read_table(crunch.work / "r.parquet")
    assert table.column_names == [
        "dataset",
        "state",
        "score",
        "site",
        "where_lat",
        "where_lon",
        "words",
    ]
    assert str(table.schema.field("words").type) == "int64"
    assert table.to_pylist() == [
        {"dataset": f"{slug}:d{n}", "state": "completed", "score": values_of(n)["score"],
         "site": values_of(n)["site"], "where_lat": values_of(n)["where"]["lat"],
         "where_lon": values_of(n)["where"]["lon"], "words": values_of(n)["words"]}
        for n in everything
    ]  # fmt: skip
    assert pq.read_table(io.BytesIO((crunch.work / "r.parquet").read_bytes())).num_rows == COUNT


# ---------------------------------------------------------------- invalid results files

HUGE = json.dumps({"a": "x" * 900}) + " " * 64 * 1024
BAD = {
    "notjson": ("words: 12", "results.json: is not JSON (Expecting value at line 1 column 1)."),
    "nested": ('{"a": {"b": {"c": 1}}}',
               'results.json: \'a\' is an object; only {"lat": .., "lon": ..} may be nested.'),
    "large": (HUGE, "results.json: larger than 64 KiB (65,536 bytes); report fewer or shorter "
              "results."),
    "keys": (json.dumps({f"k{i}": i for i in range(1000)}),
             "results.json: has 1,000 keys; at most 200 are allowed."),
    "nan": ('{"score": NaN}',
            "results.json: holds NaN, which is no number; report finite numbers only."),
    "html": ('{"<script>alert(1)</script>": 1}',
             "results.json: key '<script>alert(1)</script>' is not an identifier (a letter or "
             "'_', then letters, digits or '_', at most 64 characters)."),
    "control": ('{"a\\u0007b": 1}',
                "results.json: key 'a\\x07b' is not an identifier (a letter or '_', then "
                "letters, digits or '_', at most 64 characters)."),
}  # fmt: skip
# Copies the dataset's given.json to $CRUNCH_RESULTS, and makes a file of its own.
COPIER = 'cp given.json "$CRUNCH_RESULTS"\necho made > made.txt\n'


@pytest.mark.parametrize("slots", ["1", "2"])
def test_each_invalid_results_file_fails_its_dataset_alone(
    served_crunch: Crunch, slots: str
) -> None:
    crunch = served_crunch
    project = crunch.project("Bad", COPIER, allow_empty=False)
    slug = project["slug"]
    # The first fixes 'score' as a float; a later one reporting a text is refused by the server.
    given = {"first": '{"score": 0.5}', **{name: text for name, (text, _) in BAD.items()},
             "kind": '{"score": "high"}', "last": '{"score": 1}'}  # fmt: skip
    datasets = {name: crunch.dataset(slug, name, {"given.json": text, "in/keep.txt": name})
                for name, text in given.items()}  # fmt: skip
    result = crunch.run("loop", "--project", slug, "--isolation", "none", "--slots", slots)
    assert result.returncode == 10, result.stderr[-3000:]  # some failed
    assert "Traceback" not in result.stderr
    expected = {name: note for name, (_, note) in BAD.items()}
    expected["kind"] = (
        f"Results of dataset '{slug}:kind': 'score' is a text, but the project's 'score' is a "
        "float (fixed by its first value): report the same kind, or use another key."
    )
    for name, dataset in datasets.items():
        row = Dataset.objects.get(slug=dataset["slug"])
        files = crunch.stored(dataset)
        # Nothing of the dataset's files is lost: its inputs, what it made, its records.
        assert files["in/keep.txt"] == name and files["made.txt"] == "made\n"
        assert files["given.json"] == given[name]
        assert files[".crunch/results.json"] == given[name]
        assert ".crunch/upload_md5_checksums.json" in files
        if name not in expected:
            assert row.state == "completed", (name, row.note)
            # claimed with a refused Upload Success or not, its run is six statuses
            assert statuses(dataset["slug"]) == SIX, name
            continue
        assert (row.state, row.attempts, row.last_reason) == ("failed", 1, "results"), name
        fail = Status.objects.filter(dataset=row, state=3).get()
        assert (fail.stage, fail.reason, fail.note) == (3, "results", expected[name])
        assert f"Dataset '{slug}:{name}' failed at Upload: {expected[name]}" in result.stderr
    assert Dataset.objects.get(slug=f"{slug}:last").results.count() == 1


# ---------------------------------------------------------------- where the workflow runs

REPORTER = (
    '#!/bin/sh\nprintf \'{"isolated": true, "path": "%s"}\' "$CRUNCH_RESULTS" > "$CRUNCH_RESULTS"\n'
)


@pytest.mark.parametrize("where", ["sandbox", "container"])
def test_the_results_path_is_the_one_the_workflow_sees(
    node: Crunch, outside: Path, where: str
) -> None:
    fields: dict[str, Any] = {"workflow_kind": "executable"}
    options = ["--isolation", "sandbox"]
    if where == "container":
        fields["container"] = str(build_image(outside / "image"))
        options = list(CHARLIECLOUD)
    project = node.project("Boxed", REPORTER, **fields)
    dataset = node.dataset(project["slug"], "one", {"in.txt": "x"})
    result = node.run("loop", "--quiet", "--project", project["slug"], *options)
    assert result.returncode == 0, result.stderr
    path = node.work / "crunch-work" / project["slug"] / "one" / ".crunch" / "results.json"
    reported = {"isolated": True, "path": str(path)}
    assert json.loads(node.stored(dataset)[".crunch/results.json"]) == reported
    assert stored_values(Dataset.objects.get(slug=dataset["slug"])) == reported


def test_a_rerun_that_reports_nothing_clears_the_earlier_results(crunch: Crunch) -> None:
    workflow = 'if [ -f yes ]; then printf \'{"n": 1}\' > "$CRUNCH_RESULTS"; fi\necho > made.txt\n'
    project = crunch.project("Again", workflow)
    dataset = crunch.dataset(project["slug"], "one", {"yes": ""})
    run = ("loop", "--quiet", "--project", project["slug"], "--isolation", "none")
    ok(crunch.run(*run))
    row = Dataset.objects.get(slug=dataset["slug"])
    assert stored_values(row) == {"n": 1}
    # Run again without the file that made it report: its stored results.json came back
    # with the records, and is not taken for this run's.
    (crunch.media / dataset["base_file_path"] / "yes").unlink()
    shutil.rmtree(crunch.work / "crunch-work")
    Dataset.objects.filter(pk=row.pk).update(state="pending")
    ok(crunch.run(*run))
    assert stored_values(row) == {}
    assert crunch.stored(dataset)[".crunch/results.json"] == "{}\n"
