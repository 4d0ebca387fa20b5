"""Issue 22 (11) and 23 (6): a workflow's processes, background children included, end
with it, and never outlive their client, even one killed with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from crunch.models import Dataset, Status
from crunchclient.worker import groups
from tests.clientkit import Crunch

pytestmark = pytest.mark.django_db(transaction=True)


def marked(marker: str) -> list[psutil.Process]:
    """The processes whose command line holds marker (a sleep of an odd length)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.fixture
def leftovers() -> Iterator[list[str]]:
    """Markers whose processes are killed after the test, whatever it found."""
    markers: list[str] = []
    yield markers
    for marker in markers:
        for process in marked(marker):
            process.kill()


def gone_within(marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not marked(marker):
            return True
        time.sleep(0.1)
    return False


BACKGROUND = "(sleep 41.17; echo late > late.txt) &\necho done > out.txt\n"


def test_background_child_ends_with_the_workflow(crunch: Crunch, leftovers: list[str]) -> None:
    leftovers.append("41.17")
    project = crunch.project("Bg", BACKGROUND)
    dataset = crunch.dataset(project["slug"], "one")
    started = time.monotonic()

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # not the 41 s of the child
    assert marked("41.17") == []  # gone when the client exits
    workdir = crunch.work / "crunch-work" / project["slug"] / "one"
    assert (workdir / "out.txt").read_text() == "done\n"
    assert not (workdir / "late.txt").exists()
    assert "out.txt" in crunch.stored(dataset) and "late.txt" not in crunch.stored(dataset)


STUBBORN = "(trap '' TERM; sleep 41.18) &\n(sleep 41.19 > /dev/null 2>&1) &\necho done\n"


def test_children_that_ignore_sigterm_or_close_their_output_end_too(
    crunch: Crunch, leftovers: list[str]
) -> None:
    leftovers += ["41.18", "41.19"]
    project = crunch.project("Bg", STUBBORN)
    dataset = crunch.dataset(project["slug"], "one")

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    assert marked("41.18") == [] and marked("41.19") == []


RUNNING = "(sleep 41.21; echo late > late.txt) &\nsleep 41.22\n"


def test_workflow_does_not_outlive_a_client_killed_with_sigkill(
    crunch: Crunch, leftovers: list[str]
) -> None:
    leftovers += ["41.21", "41.22"]
    project = crunch.project("Bg", RUNNING)
    dataset = crunch.dataset(project["slug"], "one")
    client = crunch.start("run", dataset["slug"], "--quiet")
    deadline = time.monotonic() + 30
    while len(marked("41.2")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(marked("41.2")) == 2  # the workflow and its background child run
    started = Status.objects.filter(dataset__slug=dataset["slug"], stage=2, state=1)
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # a Workflow Start goes a moment later, needing no answer
    assert started.exists()

    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)

    assert gone_within("41.2", 8), [p.info["cmdline"] for p in marked("41.2")]
    workdir = crunch.work / "crunch-work" / project["slug"] / "one"
    assert not (workdir / "late.txt").exists()
    assert Dataset.objects.get(slug=dataset["slug"]).state == "running"  # its lease runs out


def test_watchdog_ends_the_groups_it_watches_when_its_client_is_gone(
    leftovers: list[str],
) -> None:
    """The watchdog on its own: the end of its input is the client's death."""
    leftovers += ["41.31", "41.32"]
    workflow = subprocess.Popen(
        ["bash", "-c", "(sleep 41.31) & sleep 41.32"], start_new_session=True
    )
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-S", str(groups.WATCHDOG), "1"], stdin=subprocess.PIPE
    )
    assert watchdog.stdin is not None
    watchdog.stdin.write(f"+{workflow.pid}\n".encode())
    watchdog.stdin.close()  # as when the client dies

    assert watchdog.wait(timeout=10) == 0
    assert workflow.wait(timeout=5) == -signal.SIGTERM
    assert gone_within("41.3", 5)


@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "preexec"])
def test_first_process_dies_with_its_client_without_the_watchdog(
    setpriv: bool, leftovers: list[str]
) -> None:
    """PDEATHSIG on its own (the watchdog's other half): set by setpriv in front of the
    command (started with vfork), or between fork and exec where setpriv is missing."""
    if setpriv and groups.setpriv_pdeathsig() is None:
        pytest.skip("no setpriv --pdeathsig here")
    marker = "41.41" if setpriv else "41.42"
    leftovers.append(marker)
    client = f"""
import subprocess, sys
from crunchclient.worker import groups
if {not setpriv}:
    groups.setpriv_pdeathsig = lambda: None
argv, preexec = groups.orphan_guard(["sleep", "{marker}"], None)
assert (preexec is None) == {setpriv}, argv
subprocess.Popen(argv, preexec_fn=preexec, start_new_session=True)
print("started", flush=True)
sys.stdin.read()
"""
    process = subprocess.Popen(
        [sys.executable, "-c", client], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    deadline = time.monotonic() + 10
    while not marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked(marker)

    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    assert gone_within(marker, 5)
