"""The client as a real subprocess against a live server and local storage."""

from __future__ import annotations

import json
import sys

import pytest

from crunch.models import Dataset, Project, Status
from tests.clientkit import RECORDS, ROOT, SIX, Crunch, clean_env, statuses

pytestmark = pytest.mark.django_db(transaction=True)

WORKFLOW = """\
set -e
wc -w < input.txt > count.txt
echo "counted $(cat count.txt) words" >&2
echo "edited by the workflow" >> input.txt
mkdir -p results && cp count.txt results/report.txt
rm -f scratch.txt
"""


def make_datasets(crunch: Crunch, count: int) -> tuple[dict, list[dict]]:
    project = crunch.project("Words", WORKFLOW)
    datasets = [
        crunch.dataset(
            project["slug"], f"d{i}", {"input.txt": "one two three\n" * (i + 1), "scratch.txt": "x"}
        )
        for i in range(count)
    ]
    return project, datasets


def check_completed(crunch: Crunch, dataset: dict, words: int) -> None:
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert statuses(dataset["slug"]) == SIX
    stored = crunch.stored(dataset)
    assert (
        set(stored)
        == {"input.txt", "scratch.txt", "count.txt", "results/report.txt", ".crunch/script.sh"}
        | RECORDS
    )
    assert stored["count.txt"].strip() == str(words)
    # The modified input replaced the stored one under the same name.
    assert stored["input.txt"].endswith("edited by the workflow\n")
    assert stored[".crunch/deleted.txt"] == "scratch.txt\n"
    assert "counted" in stored[".crunch/workflow.log"]
    uploaded = json.loads(stored[".crunch/upload_md5_checksums.json"])
    assert set(uploaded) == {"input.txt", "count.txt", "results/report.txt"}
    assert set(json.loads(stored[".crunch/setup_md5_checksums.json"])) == {
        "input.txt",
        "scratch.txt",
    }
    assert json.loads(stored[".crunch/dataset.json"])["slug"] == dataset["slug"]


def test_crunch_loop_completes_every_dataset(crunch: Crunch) -> None:
    project, datasets = make_datasets(crunch, 3)
    result = crunch.run("loop", "--project", project["slug"], "--heartbeat", "0.2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Processed 3 dataset(s): 3 completed, 0 failed" in result.stdout
    for i, dataset in enumerate(datasets):
        check_completed(crunch, dataset, 3 * (i + 1))
    workdir = crunch.work / "crunch-work" / project["slug"] / "d0"
    assert (workdir / "count.txt").exists() and (
        workdir / ".crunch/script.sh"
    ).stat().st_mode & 0o100


def test_manage_py_crunch_loop_completes_every_dataset(crunch: Crunch) -> None:
    _project, datasets = make_datasets(crunch, 2)
    env = clean_env(
        CRUNCH_URL=crunch.url, CRUNCH_TOKEN=crunch.token, CRUNCH_MEDIA_ROOT=str(crunch.media),
        CRUNCH_SQLITE=str(crunch.work / "unused.sqlite3"), DJANGO_SETTINGS_MODULE="testproject.settings",  # noqa: E501
    )  # fmt: skip
    result = crunch.run(
        "crunch_loop", "--directory", str(crunch.work / "w"), "--quiet",
        command=[sys.executable, str(ROOT / "manage.py")], env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Processed 2 dataset(s): 2 completed, 0 failed" in result.stdout
    for i, dataset in enumerate(datasets):
        check_completed(crunch, dataset, 3 * (i + 1))


def test_next_then_nothing_pending(crunch: Crunch) -> None:
    _project, datasets = make_datasets(crunch, 1)
    first = crunch.run("next", "--quiet")
    assert first.returncode == 0, first.stderr
    assert (
        first.stdout.strip()
        .splitlines()[-1]
        .startswith(f"Dataset {datasets[0]['slug']!r} completed")
    )
    second = crunch.run("next")
    assert (second.returncode, second.stdout.strip()) == (0, "Nothing pending.")
    assert Status.objects.count() == 6


def test_run_named_dataset_with_a_local_workflow(crunch: Crunch) -> None:
    project = crunch.project("Named", "exit 1\n")
    dataset = crunch.dataset(project["slug"], "only", {"a.txt": "a"})
    local = crunch.work / "local.sh"
    local.write_text("cat a.txt a.txt > b.txt\n")
    result = crunch.run("run", dataset["slug"], "--path", str(local), "--cleanup", "--quiet")
    assert result.returncode == 0, result.stderr
    assert crunch.stored(dataset)["b.txt"] == "aa"
    assert not (crunch.work / "crunch-work" / project["slug"] / "only").exists()


def test_two_loops_process_thirty_datasets_exactly_once(crunch: Crunch) -> None:
    from tests.factories import bulk_datasets, make_project

    project = make_project(name="Thirty", workflow="echo $CRUNCH_DATASET > out.txt\n")
    bulk_datasets(project, 30)
    loops = [
        crunch.start("loop", "--quiet", "--directory", f"w{i}", "--heartbeat", "0.5")
        for i in range(2)
    ]
    outputs = [loop.communicate(timeout=150) for loop in loops]
    assert [loop.returncode for loop in loops] == [0, 0], outputs
    counts = [int(out.split("Processed ")[1].split(" ")[0]) for out, _ in outputs]
    assert sum(counts) == 30 and all(counts), counts
    assert set(Dataset.objects.values_list("state", flat=True)) == {"completed"}
    for dataset in Dataset.objects.all():
        assert statuses(dataset.slug) == SIX
    assert Status.objects.filter(stage=3, state=2).count() == 30


def test_setup_record_holds_large_files_as_downloaded(crunch: Crunch) -> None:
    """Large files are hashed while the workflow runs. One the workflow rewrites at once
    is still recorded as it was downloaded, and uploaded as it was left."""
    import hashlib

    original = "line of data\n" * 400_000  # about 5 MiB: copied by the kernel, hashed later
    project = crunch.project("Big", "echo appended >> big.txt\n")
    dataset = crunch.dataset(project["slug"], "d0", {"big.txt": original, "small.txt": "s"})

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    stored = crunch.stored(dataset)
    setup = json.loads(stored[".crunch/setup_md5_checksums.json"])
    assert setup["big.txt"] == hashlib.md5(original.encode()).hexdigest()
    uploaded = json.loads(stored[".crunch/upload_md5_checksums.json"])
    assert uploaded["big.txt"] == hashlib.md5(f"{original}appended\n".encode()).hexdigest()
    assert stored["big.txt"] == f"{original}appended\n"
    workdir = crunch.work / "crunch-work" / project["slug"] / "d0"
    assert json.loads((workdir / ".crunch/setup_md5_checksums.json").read_text()) == setup


def test_files_the_workflow_wrote_early_are_hashed_while_it_runs(crunch: Crunch) -> None:
    """Upload copies a file hashed while the workflow ran, and hashes again one the
    workflow changed after that: the record and storage hold what the workflow left."""
    import hashlib

    workflow = (
        "head -c 3000000 /dev/urandom > early.bin\n"
        "echo 'first version' > rewritten.txt\n"
        "sleep 3\n"  # both settled and hashed by now
        "printf 'FIRST' | dd of=rewritten.txt conv=notrunc status=none\n"  # same size
    )
    project = crunch.project("Outputs", workflow)
    dataset = crunch.dataset(project["slug"], "d0", {"input.txt": "in"})

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    assert "2 new or modified file(s) uploaded (1 hashed while the workflow ran)" in result.stdout
    stored = crunch.stored(dataset)
    uploaded = json.loads(stored[".crunch/upload_md5_checksums.json"])
    assert stored["rewritten.txt"] == "FIRST version\n"
    workdir = crunch.work / "crunch-work" / project["slug"] / "d0"
    for rel in ("early.bin", "rewritten.txt", "input.txt"):
        assert uploaded[rel] == hashlib.md5((workdir / rel).read_bytes()).hexdigest()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 starts a new session")
def test_workflow_has_its_own_process_group_in_the_clients_session(crunch: Crunch) -> None:
    """Its own group, to be stopped as a whole; the client's session, because Linux's
    autogroup shares the CPU between sessions, and the client's nice-19 hashing must
    yield to the workflow rather than share with it as an equal."""
    workflow = (
        "read -r pid _ _ _ group session _ < /proc/$$/stat\n"
        "read -r _ _ _ _ _ client_session _ < /proc/$PPID/stat\n"
        'echo "$pid $group $session $client_session" > ids.txt\n'
    )
    project = crunch.project("Ids", workflow)
    dataset = crunch.dataset(project["slug"], "d0", {"input.txt": "in"})

    # Unisolated, so /proc shows the ids (a sandbox's PID namespace hides the client's).
    result = crunch.run("run", dataset["slug"], "--quiet", "--isolation", "none")

    assert result.returncode == 0, result.stderr
    pid, group, session, client_session = crunch.stored(dataset)["ids.txt"].split()
    assert group == pid
    assert session == client_session


def test_a_failed_run_uploads_its_workflow_log_and_the_page_shows_it(crunch: Crunch, client):
    project = crunch.project(
        "Broken", 'echo "reading the input" && echo "no such column" >&2; exit 3'
    )
    dataset = crunch.dataset(project["slug"], "b", {"input.txt": "x\n"})
    result = crunch.run("run", dataset["slug"], "--quiet")
    assert result.returncode != 0
    stored = crunch.stored(dataset)
    assert "reading the input" in stored[".crunch/workflow.log"]
    assert "no such column" in stored[".crunch/workflow.log"]
    assert set(stored) == {"input.txt", ".crunch/workflow.log"}  # nothing else of a failed run
    Project.objects.filter(slug=project["slug"]).update(is_public=True)
    page = client.get(f"/datasets/{dataset['slug']}/")
    assert page.status_code == 200 and "no such column" in page.content.decode()


def test_max_datasets_stops_without_claiming_one_more_with_the_last_upload(crunch: Crunch):
    project, _datasets = make_datasets(crunch, 4)
    result = crunch.run("loop", "--project", project["slug"], "--max-datasets", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    states = dict(Dataset.objects.values_list("slug", "state"))
    assert sorted(states.values()) == ["completed", "completed", "pending", "pending"]
    left = Dataset.objects.filter(state="pending")
    assert [d.attempts for d in left] == [0, 0]
    assert not Status.objects.filter(dataset__in=left).exists()
