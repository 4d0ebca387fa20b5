"""``--timeout DURATION``: a dataset's workflow that runs past it is stopped, its whole
process group with it; the dataset fails with a note naming the limit, and a loop goes
on with the next dataset."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, error_line

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 'if [ "$CRUNCH_DATASET" = slow:a ]; then sleep 30; fi\necho done > out.txt\n'
NOTE = "The workflow ran past --timeout 2s and was stopped."


def processes_in(folder: Path) -> list[str]:
    """The command lines of the processes working in folder (or below it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone, or not ours
        if Path(cwd).is_relative_to(folder):
            found.append(command)
    return found


def workflow_fail(slug: str) -> Status:
    return Status.objects.get(dataset__slug=slug, stage=2, state=3)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_loop_stops_a_workflow_past_its_timeout_and_goes_on(crunch: Crunch) -> None:
    project = crunch.project("Slow", SLOW, max_attempts=1)
    slow, quick = (crunch.dataset(project["slug"], name) for name in ("a", "b"))
    started = time.monotonic()

    result = crunch.run("loop", "--timeout", "2s")

    assert time.monotonic() - started < 25  # not the 30 s of the sleep
    assert (result.returncode, error_line(result)) == (
        10,
        "CommandError: 1 of 2 dataset(s) failed: see their notes with 'crunch why DATASET'.",
    )
    assert f"Dataset 'slow:a' failed at Workflow: {NOTE}" in result.stderr
    assert "Processed 2 dataset(s): 1 completed, 1 failed, in " in result.stdout
    assert workflow_fail("slow:a").note == NOTE
    assert Dataset.objects.get(slug="slow:a").state == "failed"
    assert Dataset.objects.get(slug="slow:b").state == "completed"
    assert crunch.stored(quick)["out.txt"] == "done\n"
    assert "out.txt" not in crunch.stored(slow)
    assert processes_in(crunch.work) == []  # neither bash nor its sleep lives on


def test_run_names_the_limit_as_given(crunch: Crunch) -> None:
    project = crunch.project(
        "Chatty", "echo working >&2\nsleep 30\n", max_attempts=1
    )  # its stderr ends the note
    slug = crunch.dataset(project["slug"], "one")["slug"]

    result = crunch.run("run", slug, "--timeout", "1.5")

    assert (result.returncode, error_line(result)) == (
        10,
        f"CommandError: Dataset {slug!r} failed at Workflow: The workflow ran past --timeout "
        "1.5s and was stopped. Last lines of stderr: ... working",
    )
    assert workflow_fail(slug).note == (
        "The workflow ran past --timeout 1.5s and was stopped. Last lines of stderr:\nworking"
    )
    assert processes_in(crunch.work) == []


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("0", "'0' must be longer than 0s."),
        ("soon", "'soon' is not a duration: use e.g. 2h, 30m, 90s or 1h30m."),
        ("-5m", "'-5m' is not a duration: use e.g. 2h, 30m, 90s or 1h30m."),
    ],
)
def test_a_timeout_that_is_no_duration_is_refused_before_claiming(
    crunch: Crunch, given: str, why: str
) -> None:
    project = crunch.project("Never", "true\n")
    crunch.dataset(project["slug"], "one")

    result = crunch.run("loop", f"--timeout={given}")

    assert result.returncode == 2
    assert error_line(result) == f"crunch loop: error: argument --timeout: {why}"
    assert Status.objects.count() == 0
    assert Dataset.objects.get().state == "pending"
