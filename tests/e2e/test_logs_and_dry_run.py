"""``crunch logs`` and ``crunch loop --dry-run`` through the console script against a live
server and local storage: what a reader of logs sees, and a dry run that claims nothing."""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, error_line
from tests.e2e.test_s3 import BUCKET, bucket, moto_url, toml_settings  # noqa: F401
from tests.factories import make_client_user, make_user

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def test_logs_prints_the_stored_log_to_any_reader_and_names_what_is_missing(
    crunch: Crunch,
) -> None:
    project = crunch.project("Loud", "echo 'reading \x1b]8;;http://x\x07input'\necho oops >&2\n")
    done = crunch.dataset(project["slug"], "done", {"input.txt": "in"})
    fresh = crunch.dataset(project["slug"], "fresh", {"input.txt": "in"})
    assert crunch.run("run", done["slug"], "--quiet").returncode == 0
    _, viewer = make_user("reader", role="viewer")

    result = crunch.run("logs", "loud:done", env={**crunch.env, "CRUNCH_TOKEN": viewer})

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "reading input\noops\n"  # the escape sequence is not obeyed

    missing = crunch.run("logs", "loud:fresh")
    assert (missing.returncode, missing.stdout) == (0, "")
    assert missing.stderr == (
        f"Dataset 'loud:fresh' (pending) has no workflow log yet: "
        f"{fresh['base_file_path']}/.crunch/workflow.log in the local storage at "
        f"{str(crunch.media)!r}.\n"
    )

    unknown = crunch.run("logs", "loud:nope")
    assert unknown.returncode == 7
    assert error_line(unknown).startswith("CommandError: No dataset has the slug 'loud:nope'")
    assert unknown.stdout == ""


def test_logs_never_reads_a_link_or_a_partial_upload(crunch: Crunch, tmp_path) -> None:
    project = crunch.project("Linked", "true\n")
    dataset = crunch.dataset(project["slug"], "d", {"input.txt": "in"})
    records = crunch.media / dataset["base_file_path"] / ".crunch"
    records.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("the node's secret\n")
    (records / "workflow.log").symlink_to(secret)
    (records / "workflow.log.crunch-partial-1234").write_text("half\n")

    result = crunch.run("logs", "linked:d")

    assert (result.returncode, result.stdout) == (0, "")
    assert "the node's secret" not in result.stderr and "half" not in result.stderr
    warning, missing = result.stderr.splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d Not following link 'workflow.log': it is in storage", warning
    )
    assert missing == (
        f"Dataset 'linked:d' (pending) has no workflow log yet: {dataset['base_file_path']}"
        f"/.crunch/workflow.log in the local storage at {str(crunch.media)!r}."
    )


def wait_for(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_logs_follow_waits_for_a_running_dataset_and_prints_its_log_once_uploaded(
    crunch: Crunch,
) -> None:
    flag = crunch.work / "go"
    project = crunch.project(
        "Slow", f"echo started\nwhile [ ! -e {flag} ]; do sleep 0.1; done\necho finished\n"
    )
    crunch.dataset(project["slug"], "d", {"input.txt": "in"})
    run = crunch.start("run", "slow:d", "--quiet", "--bind", str(crunch.work))  # the flag
    try:
        wait_for(lambda: Dataset.objects.get(slug="slow:d").stage == 2, "the workflow to start")

        once = crunch.run("logs", "slow:d")
        assert (once.returncode, once.stdout) == (0, "")
        assert re.fullmatch(
            f"Dataset 'slow:d' is running on {re.escape(socket.gethostname())} since {WHEN}; "
            "its log is uploaded when the stage ends \\(no log is stored yet\\)\\.\n",
            once.stderr,
        ), once.stderr

        follow = crunch.start("logs", "slow:d", "--follow", "--every", "0.2")
        assert follow.stderr is not None
        first = follow.stderr.readline()  # it looked: the dataset runs
        assert first == once.stderr.replace("no log is stored yet", "no log is stored yet"), first
        time.sleep(0.5)
        assert follow.poll() is None  # still following
        flag.touch()
        out, err = follow.communicate(timeout=60)
    finally:
        run.communicate(timeout=60)

    assert follow.returncode == 0, err
    assert out == "started\nfinished\n"
    assert err.splitlines()[-1] == "Dataset 'slow:d' is completed: no longer running."
    assert Dataset.objects.get(slug="slow:d").state == "completed"
    assert Status.objects.filter(dataset__slug="slow:d").count() == 6  # the run's own only


SANDBOX = "Isolation: ready (workflows run in the bubblewrap sandbox)."  # bwrap: CI has it


def test_loop_dry_run_says_what_it_would_claim_and_claims_nothing(crunch: Crunch) -> None:
    crunch.project("Queue", "exit 1\n", retry_delay=600)
    for i in range(7):
        crunch.dataset("queue", f"d{i}", {"input.txt": "in"})
    crunch.api("PATCH", "datasets/queue:d5/", priority=9)

    result = crunch.run("loop", "--project", "queue", "--dry-run")

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert Status.objects.count() == 0
    assert set(Dataset.objects.values_list("state", "attempts")) == {("pending", 0)}
    assert not (crunch.work / "crunch-work").exists()
    assert result.stdout.splitlines() == [
        "Dry run: nothing is claimed and no status is sent.",
        "Project 'queue': 7 pending, 0 running.",
        "Claim order: the highest priority first, then the oldest, skipping datasets that wait "
        "to retry (read with GET api/datasets/?project=queue&state=pending, the server has no "
        "queue endpoint, sorted here).",
        "It would claim first:",
        "  queue:d5  priority 9",
        *(f"  queue:d{i}  priority 0" for i in range(4)),
        f"Workflow of project 'queue': ready (a bash script: bash is {shutil.which('bash')}).",
        SANDBOX,
        f"Storage: ready (the local storage at {str(crunch.media)!r} lists).",
        f"Working directory {str(crunch.work / 'crunch-work')!r}: ready (it would be created).",
    ]

    assert crunch.run("run", "queue:d0", "--quiet").returncode == 10  # waits 600 s to retry
    assert crunch.run("run", "queue:d1", "--quiet", "--workflow", "script").returncode == 10
    Dataset.objects.filter(slug="queue:d1").update(not_before=None)  # its delay is over
    statuses = Status.objects.count()

    again = crunch.run("loop", "--project", "queue", "-n").stdout.splitlines()

    assert Status.objects.count() == statuses
    assert list(Dataset.objects.order_by("id").values_list("attempts", flat=True)) == [
        1, 1, 0, 0, 0, 0, 0,
    ]  # fmt: skip
    assert re.fullmatch(
        f"Project 'queue': 7 pending \\(1 of them after a failure, waiting to retry until {WHEN} "
        "at the latest\\), 0 running\\.",
        again[1],
    ), again
    anywhere = crunch.run("loop", "--dry-run").stdout.splitlines()
    assert anywhere[1] == again[1]
    assert "GET api/datasets/?state=pending," in anywhere[2]
    assert anywhere[3:5] == again[3:5]
    assert again[3:9] == [
        "It would claim first:",
        "  queue:d5  priority 9",
        "  queue:d1  priority 0, failed 1 time(s) before",
        *(f"  queue:d{i}  priority 0" for i in range(2, 5)),
    ]


def test_loop_dry_run_names_each_problem_and_exits_2(crunch: Crunch, tmp_path) -> None:
    crunch.project("Odd", "#!/opt/nowhere/interp\necho hi\n", workflow_kind="executable")
    crunch.dataset("odd", "d0", {"input.txt": "in"})
    settings = tmp_path / "gone.toml"
    settings.write_text(crunch.settings_file.read_text().replace("media", "unmounted"))

    result = crunch.run(
        "loop", "--project", "odd", "--dry-run", "--storage-settings", str(settings)
    )

    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[-4:] == [
        "Workflow of project 'odd': NOT READY: Project 'odd' (workflow kind 'executable') "
        "needs '/opt/nowhere/interp' (the workflow's '#!' line), which is not installed on "
        "this node: install it or change the workflow's first line.",
        SANDBOX,
        f"Storage: NOT READY: The local storage's location {str(tmp_path / 'unmounted')!r} is "
        f"not a folder: mount or create it, or fix OPTIONS location in the storage settings "
        f"file {str(settings)!r}.",
        f"Working directory {str(crunch.work / 'crunch-work')!r}: ready (it would be created).",
    ]
    assert error_line(result) == (
        "CommandError: Not ready: Workflow of project 'odd', Storage (see above); "
        "nothing was claimed."
    )
    assert Status.objects.count() == 0
    assert Dataset.objects.get(slug="odd:d0").attempts == 0


def test_logs_and_dry_run_read_s3_and_name_a_missing_bucket(
    live_server: Any, bucket: Any, moto_url: str, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    work = tmp_path / "client"
    work.mkdir()
    crunch = Crunch(
        url=live_server.url, token=make_client_user()[1], media=tmp_path, work=work,
        settings_file=toml_settings(tmp_path / "storage.toml", moto_url),
    )  # fmt: skip
    crunch.project("Cloud", "echo counted\n")
    crunch.dataset("cloud", "d0")
    crunch.dataset("cloud", "d1")

    ready = crunch.run("loop", "--project", "cloud", "--dry-run")
    assert ready.returncode == 0, ready.stderr
    assert f"Storage: ready (bucket {BUCKET!r} lists)." in ready.stdout.splitlines()
    assert crunch.run("run", "cloud:d0", "--quiet").returncode == 0
    assert crunch.run("logs", "cloud:d0").stdout == "counted\n"

    gone = tmp_path / "gone.toml"
    gone.write_text(crunch.settings_file.read_text().replace(BUCKET, "no-such-bucket"))
    result = crunch.run("loop", "--project", "cloud", "-n", "--storage-settings", str(gone))
    assert result.returncode == 2
    storage = [line for line in result.stdout.splitlines() if line.startswith("Storage")]
    assert storage == [
        "Storage: NOT READY: bucket 'no-such-bucket' cannot be listed (An error occurred "
        "(NoSuchBucket) when calling the ListObjectsV2 operation: The specified bucket does not "
        f"exist): check the storage settings file {str(gone)!r}."
    ]
    assert (
        error_line(result) == "CommandError: Not ready: Storage (see above); nothing was claimed."
    )
    assert Dataset.objects.get(slug="cloud:d1").attempts == 0
