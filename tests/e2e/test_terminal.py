"""From folders to results in the terminal: register, watch, explain and fetch through the
``crunch`` console script against a live server and local storage."""

from __future__ import annotations

import datetime
import json
import re
import time
from pathlib import Path

import pytest

from crunch.models import Attribute, Dataset, Status
from crunchclient.transfer.progress import size_text
from tests.clientkit import Crunch, error_line, free_port, statuses

pytestmark = pytest.mark.django_db(transaction=True)

IMPORTED = 1_000  # datasets registered from each of the three sources
PROCESSED = 334  # from each source: 1,002 datasets that two loops then process
WORKFLOW = "set -e\nwc -w < input.txt > count.txt\n"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def ok(result: object) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def words(i: int) -> str:
    return "w " * (i % 7 + 1) + "\n"


def write_csv(path: Path, count: int) -> None:
    lines = ["name,base_file_path,depth:float,count:int,dry:bool,visited:date,where:lat-long"]
    lines += [
        f"c{i},csv/c{i},{i / 4},{i},{'true' if i % 2 else 'false'},2024-05-{i % 28 + 1:02d},"
        f'"-37.8,144.{i}"'
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")


def register_from_three_sources(crunch: Crunch, count: int) -> int:
    """Project 'words' and count datasets from each source, imported twice; the total."""
    env = crunch.maintainer_env
    workflow = crunch.work / "count.sh"
    workflow.write_text(WORKFLOW)
    assert ok(crunch.run("add-project", "Words", "--workflow", str(workflow), env=env)) == "words\n"
    for i in range(count):
        for folder in (crunch.media / "incoming", crunch.work / "local", crunch.media / "csv"):
            name = {"incoming": "s", "local": "u", "csv": "c"}[folder.name]
            (folder / f"{name}{i}").mkdir(parents=True)
            (folder / f"{name}{i}" / "input.txt").write_text(words(i))
    write_csv(crunch.work / "sites.csv", count)
    folders = [str(crunch.work / "local" / f"u{i}") for i in range(count)]
    imports = [
        ("--from-storage", "incoming"), ("--upload", *folders), ("--from-csv", "sites.csv"),
    ]  # fmt: skip
    for source in imports:
        assert ok(crunch.run("import", "words", *source, env=env)) == (
            f"{count} new, 0 already registered.\n"
        )
    for source in imports:  # a second import adds nothing
        assert ok(crunch.run("import", "words", *source, env=env)) == (
            f"0 new, {count} already registered.\n"
        )
    total = 3 * count
    assert Dataset.objects.filter(project__slug="words").count() == total
    assert Dataset.objects.get(slug="words:s3").base_file_path == "incoming/s3"
    assert Dataset.objects.get(slug="words:u3").base_file_path == "crunch/words/u3"
    assert (crunch.media / "crunch/words/u3/input.txt").read_text() == words(3)
    typed = {a.key: (a.kind, a.value) for a in Attribute.objects.filter(dataset__slug="words:c5")}
    assert typed == {
        "depth": ("float", 1.25), "count": ("int", 5), "dry": ("bool", True),
        "visited": ("date", datetime.date(2024, 5, 6)), "where": ("latlong", (-37.8, 144.5)),
    }  # fmt: skip
    return total


def test_import_from_three_sources_at_scale_is_idempotent(crunch: Crunch) -> None:
    total = register_from_three_sources(crunch, IMPORTED)
    listed = json.loads(ok(crunch.run("ls", "--project", "words", "--json")))  # 6 pages
    assert sorted(row["slug"] for row in listed) == sorted(
        Dataset.objects.values_list("slug", flat=True)
    )
    assert len(listed) == total


def test_register_process_watch_explain_and_download(served_crunch: Crunch) -> None:
    crunch = served_crunch  # gunicorn: two loops through 1,002 datasets
    total = register_from_three_sources(crunch, PROCESSED)

    # Before any client: why names the queue and the missing client.
    assert ok(crunch.run("why", "words:s0")) == (
        "Pending and next in line, but no live client is working on project 'words'.\n"
        "To move it: crunch loop --project words\n"
    )
    assert ok(crunch.run("why", "words:s10")) == (  # folders in sorted order: s0, s1, s10
        "Pending behind 2 dataset(s) of higher priority or older, but no live client is "
        "working on project 'words'.\nTo move it: crunch loop --project words\n"
    )

    loops = [
        crunch.start("loop", "--project", "words", "--quiet", "--directory", f"w{i}")
        for i in range(2)
    ]
    outputs = [loop.communicate(timeout=1200) for loop in loops]
    assert [loop.returncode for loop in loops] == [0, 0], outputs
    counts = [int(out.split("Processed ")[1].split(" ")[0]) for out, _ in outputs]
    assert sum(counts) == total and all(counts), counts
    assert set(Dataset.objects.values_list("state", flat=True)) == {"completed"}

    status = ok(crunch.run("status", "--project", "words")).splitlines()
    assert status[0] == (
        f"Project 'words': {total} dataset(s): 0 pending, 0 running, {total} completed, 0 failed."
    )
    assert re.fullmatch(
        r"Throughput \d+\.\d datasets/h over the last hour; time to finish 0s\.", status[1]
    )
    assert status[2:] == ["Live clients: 0."]
    overview = json.loads(ok(crunch.run("status", "--project", "words", "--json")))
    assert (overview["completed"], overview["live_clients"], overview["failures"]) == (total, 0, [])

    table = ok(crunch.run("ls", "--project", "words", "--state", "completed", "--search", "c1"))
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["dataset", "state", "attempts", "stage", "note"]
    named = [name for name in (f"c{i}" for i in range(PROCESSED)) if "c1" in name]  # CSV order
    assert rows[2:-1] == [[f"words:{name}", "completed", "1", "Upload"] for name in named]
    assert rows[-1] == [str(len(named)), "dataset(s)."]
    listed = json.loads(ok(crunch.run("ls", "--project", "words", "--json")))
    assert len(listed) == total

    why = ok(crunch.run("why", "words:c7")).splitlines()
    assert re.fullmatch(f"Completed at {WHEN} after 1 of 3 attempt\\(s\\)\\.", why[0]), why
    assert why[1:] == ["To move it: crunch download words:c7"]

    before = Dataset.objects.get(slug="words:c7")
    claims = Status.objects.count()
    assert ok(crunch.run("download", "words:c7", "--dest", "out", "--quiet")) == (
        f"Dataset 'words:c7': 9 file(s) in {str(Path('out/words/c7'))!r}, checksums verified.\n"
        "Downloaded 1 dataset(s).\n"
    )
    fetched = crunch.work / "out/words/c7"
    assert (fetched / "count.txt").read_text().strip() == "1"
    assert (fetched / "input.txt").read_text() == words(7)
    outputs_only = ok(
        crunch.run("download", "words:c7", "--dest", "outputs", "--outputs-only", "--quiet")
    )
    assert outputs_only.splitlines()[0] == (
        f"Dataset 'words:c7': 8 file(s) in {str(Path('outputs/words/c7'))!r} (1 of Setup's "
        "left out), checksums verified."
    )
    assert not (crunch.work / "outputs/words/c7/input.txt").exists()
    assert (crunch.work / "outputs/words/c7/count.txt").exists()
    after = Dataset.objects.get(slug="words:c7")  # nothing claimed
    assert (after.state, after.attempts, Status.objects.count()) == (
        before.state, before.attempts, claims,
    )  # fmt: skip

    many = ok(crunch.run(
        "download", "--project", "words", "--state", "completed", "--dest", "all", "--quiet"
    ))  # fmt: skip
    assert many.splitlines()[-1] == f"Downloaded {total} dataset(s)."
    files = ok(crunch.run("files", "words:s1")).splitlines()
    size = size_text(sum(crunch_sizes(crunch, "incoming/s1")))  # its records' size varies
    assert files[-1] == f"9 file(s), {size} in 'incoming/s1'."
    assert "       5 B  input.txt" in files


def crunch_sizes(crunch: Crunch, folder: str) -> list[int]:
    base = crunch.media / folder
    return [p.stat().st_size for p in base.rglob("*") if p.is_file()]


def test_a_missing_folder_fails_setup_with_the_folder_and_the_storage(crunch: Crunch) -> None:
    project = crunch.project("Strict", WORKFLOW, allow_empty=False)
    dataset = crunch.api(
        "POST", "datasets/", parent=project["slug"], name="d0", base_file_path="typo/d0"
    )

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 10
    assert error_line(result).endswith(
        f"The dataset's folder 'typo/d0' is missing or empty in the local storage at "
        f"{str(crunch.media)!r}: check its base_file_path and the storage settings, or let "
        "the project's datasets start empty (allow_empty)."
    )
    assert statuses(dataset["slug"])[:2] == [(1, 1), (1, 3)]
    assert "typo/d0" in Dataset.objects.get(slug=dataset["slug"]).note

    lenient = crunch.project("Lenient", "echo made > made.txt\n", allow_empty=True)
    empty = crunch.api("POST", "datasets/", parent=lenient["slug"], name="d0")
    assert crunch.run("run", empty["slug"], "--quiet").returncode == 0


def test_a_failing_dataset_waits_its_retry_delays_then_ends_failed(crunch: Crunch) -> None:
    project = crunch.project("Flaky", "exit 1\n", max_attempts=3, retry_delay=2)
    dataset = crunch.dataset(project["slug"], "d0", {"input.txt": "in"})
    slug = dataset["slug"]
    deadline = time.monotonic() + 120
    while Dataset.objects.get(slug=slug).state != "failed":
        assert time.monotonic() < deadline, statuses(slug)
        result = crunch.run("next", "--project", project["slug"], "--quiet")
        assert result.returncode in (0, 10), result.stderr
        time.sleep(0.2)

    rows = list(Status.objects.filter(dataset__slug=slug).order_by("created", "id"))
    starts = [s.created for s in rows if (s.stage, s.state) == (1, 1)]
    fails = [s.created for s in rows if s.state == 3]
    assert len(starts) == len(fails) == 3
    for attempt, delay in ((1, 2), (2, 4)):  # doubling per attempt
        assert (starts[attempt] - fails[attempt - 1]).total_seconds() >= delay
    assert Dataset.objects.get(slug=slug).attempts == 3
    why = ok(crunch.run("why", slug)).splitlines()
    assert why[0].startswith(
        "Failed 3 of 3 attempt(s) with exit-code (1): it is not retried by itself."
    )
    assert why[1:] == ["To move it: crunch retry flaky:d0"]

    patient = crunch.project("Patient", "exit 1\n", max_attempts=3, retry_delay=600)
    waiting = crunch.dataset(patient["slug"], "d0", {"input.txt": "in"})
    assert crunch.run("next", "--project", "patient", "--quiet").returncode == 10
    assert ok(crunch.run("next", "--project", "patient")) == "Nothing pending.\n"
    why = ok(crunch.run("why", waiting["slug"])).splitlines()
    assert re.fullmatch(
        f"Pending after failing 1 of 3 attempt\\(s\\) with exit-code \\(1\\); not to be retried "
        f"before {WHEN} "
        "\\(the project's retry delay\\)\\. The last note: .*",
        why[0],
    ), why
    assert why[1:] == ["To move it: crunch run patient:d0"]


def test_an_unreachable_server_at_start_ends_soon_with_the_url(crunch: Crunch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = crunch.run("status", "--url", url, "--retry-for", "2")
    assert 1.5 <= time.monotonic() - started < 15
    assert result.returncode == 3
    assert f"Cannot reach the crunch server at '{url}/'" in error_line(result)
    assert "after retrying for 2s" in error_line(result)

    started = time.monotonic()
    result = crunch.run("why", "p:d", "--url", url)  # the default at start: 30 s
    assert 25 <= time.monotonic() - started < 45
    assert "after retrying for 30s" in error_line(result)
