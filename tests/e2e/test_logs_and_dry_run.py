"""``crunch logs`` and ``crunch loop --dry-run`` through the console script against a live
server and local storage: what a reader of logs sees, and a dry run that claims nothing."""

from __future__ import annotations

import re
import socket
import time

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, error_line
from tests.factories import make_user

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

    assert result.returncode == 0
    assert "secret" not in result.stdout + result.stderr.replace("secret", "", 0)
    assert "half" not in result.stdout
    assert result.stderr.splitlines()[-1].startswith("Dataset 'linked:d' (pending) has no ")


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
    run = crunch.start("run", "slow:d", "--quiet")
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
        time.sleep(1)
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
