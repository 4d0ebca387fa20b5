"""Issue 28, the client's side: real failures through ``crunch loop``, each recorded with
its reason, and the retry policy, the claim filter and CRUNCH_ATTEMPT acting on them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from crunchclient.worker.failures import OomCounter
from tests.clientkit import CRUNCH, Crunch
from tests.e2e.test_interruptions import wait_for_stage

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024**2


def last_fail(slug: str) -> Status:
    return Status.objects.filter(dataset__slug=slug, state=3).order_by("created", "id").last()


def reason_of(slug: str) -> tuple[str, str]:
    fail = last_fail(slug)
    assert fail is not None, f"{slug} has no Fail"
    return fail.reason, fail.reason_detail


def row(slug: str) -> Dataset:
    return Dataset.objects.get(slug=slug)


# ---------------------------------------------------------------------------- the reasons


def test_a_workflow_that_exits_3(crunch: Crunch) -> None:
    crunch.project("Three", "echo bad input >&2\nexit 3\n", max_attempts=1)
    slug = crunch.dataset("three", "one")["slug"]

    result = crunch.run("loop", "--quiet", "--timeout", "1m")

    assert result.returncode == 10, result.stderr
    fail = last_fail(slug)
    assert (fail.stage, fail.reason, fail.reason_detail, fail.seconds) == (2, "exit-code", "3", 60)
    assert (row(slug).state, row(slug).last_reason) == ("failed", "exit-code")


def test_a_workflow_killed_by_sigkill(crunch: Crunch) -> None:
    crunch.project("Killed", "kill -9 $$\n", max_attempts=1)
    slug = crunch.dataset("killed", "one")["slug"]

    result = crunch.run("loop", "--quiet")

    assert result.returncode == 10, result.stderr
    # Where the cgroup's OOM counter says no OOM kill happened, a SIGKILL is a signal; where
    # it cannot be read, an unexplained SIGKILL is probably the OOM killer's.
    readable = OomCounter().read() is not None
    assert reason_of(slug) == (("signal", "SIGKILL") if readable else ("out-of-memory", "probably"))


def test_a_missing_tool_is_not_retried(crunch: Crunch) -> None:
    crunch.project("Tool", "echo start\nno-such-aligner --fast in.fa\n", max_attempts=3)
    slug = crunch.dataset("tool", "one")["slug"]

    result = crunch.run("loop", "--quiet")

    assert result.returncode == 10, result.stderr
    assert reason_of(slug) == ("tool-missing", "no-such-aligner")
    assert (row(slug).state, row(slug).attempts) == ("failed", 1)  # attempts remain: held


def test_an_empty_input_folder_is_input_missing_and_not_retried(crunch: Crunch) -> None:
    crunch.project("Empty", "cat in.txt\n", max_attempts=3, allow_empty=False)
    slug = crunch.dataset("empty", "one")["slug"]

    result = crunch.run("loop", "--quiet")

    assert result.returncode == 10, result.stderr
    fail = last_fail(slug)
    assert (fail.stage, fail.reason) == (1, "input-missing")
    assert "missing or empty" in fail.note
    assert (row(slug).state, row(slug).attempts) == ("failed", 1)


def test_a_workflow_past_its_timeout_needs_more_time(crunch: Crunch) -> None:
    workflow = 'if [ "$CRUNCH_ATTEMPT" = 1 ]; then sleep 30; fi\necho done > out.txt\n'
    crunch.project("Slow", workflow, max_attempts=3, retry_delay=0)
    slug = crunch.dataset("slow", "one")["slug"]

    first = crunch.run("loop", "--quiet", "--timeout", "2s")

    assert first.returncode == 10, first.stderr
    fail = last_fail(slug)
    assert (fail.reason, fail.reason_detail, fail.seconds) == ("time-limit", "timeout", 2)
    assert (row(slug).state, row(slug).attempts, row(slug).needs_seconds) == ("pending", 1, 3)
    # A loop that gives a dataset no more than 2 s (or says nothing) is not handed it.
    for limit in (["--timeout", "2s"], []):
        again = crunch.run("loop", "--quiet", *limit)
        assert "Processed 0 dataset(s)" in again.stdout, again.stderr
    done = crunch.run("loop", "--quiet", "--timeout", "1m")
    assert done.returncode == 0, done.stderr
    assert (row(slug).state, row(slug).attempts, row(slug).needs_seconds) == ("completed", 2, None)


def test_a_workflow_past_the_loops_time_limit_is_released_without_spending(
    crunch: Crunch,
) -> None:
    crunch.project("Long", "sleep 60\n", max_attempts=1)
    slug = crunch.dataset("long", "one")["slug"]
    started = time.monotonic()

    result = crunch.run("loop", "--quiet", "--time-limit", "3s")

    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    assert "--time-limit 3s reached" in result.stdout
    assert reason_of(slug) == ("time-limit", "wall-time")
    assert (row(slug).state, row(slug).attempts, row(slug).needs_seconds) == ("pending", 0, None)


def test_sigterm_from_the_user_is_cancelled_and_spends_nothing(crunch: Crunch) -> None:
    crunch.project("Stop", "sleep 60\n", max_attempts=1)
    slug = crunch.dataset("stop", "one")["slug"]
    client = crunch.start("loop", "--quiet")
    wait_for_stage(slug, 2)

    client.send_signal(signal.SIGTERM)
    _, err = client.communicate(timeout=30)

    assert client.returncode == 130, err
    assert reason_of(slug) == ("cancelled", "")
    assert (row(slug).state, row(slug).attempts) == ("pending", 0)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders made immutable (chattr +i: even root cannot add to them), undone after."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_storage_error_after_retries_is_transfer(crunch: Crunch, immutable: list[Path]) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr to make the storage folder unwritable, even for root")
    crunch.project("Store", "echo result > out.txt\n", max_attempts=1)
    dataset = crunch.dataset("store", "one", {"in.txt": "x"})
    folder = crunch.media / dataset["base_file_path"]
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"chattr +i is refused here: {made.stderr.strip()}")
    immutable.append(folder)

    result = crunch.run("loop", "--quiet", "--retry-for", "2")

    assert result.returncode == 10, result.stderr
    fail = last_fail(dataset["slug"])
    assert (fail.stage, fail.reason) == (3, "transfer")


# ---------------------------------------------------------------------------- a real OOM kill

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def small_cgroup() -> Iterator[Path]:
    """A cgroup v1 memory cgroup limited to 256 MiB, removed after; skipped where none can
    be made (no cgroup v1 memory hierarchy, or not allowed)."""
    group = MEMORY_ROOT / f"crunch-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(256 * MiB))
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup v1 memory cgroup under {MEMORY_ROOT}: {exc}")
    yield group
    for _ in range(50):  # its processes are gone once the client exited
        try:
            group.rmdir()
            break
        except OSError:
            time.sleep(0.1)


ALLOCATES = (
    'set -e\npython3 -c "b = bytearray(768 * 1024 * 1024); print(len(b))"\necho done > out.txt\n'
)


def test_a_real_oom_kill_is_out_of_memory_and_needs_more(
    crunch: Crunch, small_cgroup: Path
) -> None:
    crunch.project("Hungry", ALLOCATES, max_attempts=3, retry_delay=0)
    slug = crunch.dataset("hungry", "one")["slug"]
    tasks = small_cgroup / "tasks"
    # The loop runs inside the cgroup (its shell joins it, then becomes the loop).
    wrapper = ["bash", "-c", f'echo $$ > {tasks} && exec "$0" "$@"', CRUNCH]
    before = (small_cgroup / "memory.oom_control").read_text()

    # As in a batch task whose scheduler enforces its memory: the loop reads what it has
    # from Slurm's variable (with --memory it would make a cgroup of its own, below).
    task_env = {**crunch.env, "SLURM_MEM_PER_NODE": "256"}
    result = crunch.run("loop", "--quiet", command=[*wrapper], env=task_env)

    assert "oom_kill 0" in before
    assert "oom_kill 0" not in (small_cgroup / "memory.oom_control").read_text()
    assert result.returncode == 10, result.stderr
    fail = last_fail(slug)
    assert (fail.reason, fail.reason_detail, fail.memory) == (
        "out-of-memory",
        "oom_kill",
        256 * MiB,
    )
    # Retried, an attempt spent, and only for a claim announcing more than 256 MiB.
    assert (row(slug).state, row(slug).attempts) == ("pending", 1)
    assert row(slug).needs_memory == 256 * MiB + 1
    small = crunch.run("loop", "--quiet", "--memory", "256m")
    assert "Processed 0 dataset(s)" in small.stdout, small.stderr
    big = crunch.run("loop", "--quiet", "--memory", "1g")
    assert big.returncode == 0, big.stderr
    assert (row(slug).state, row(slug).attempts, row(slug).needs_memory) == ("completed", 2, None)


# ---------------------------------------------------------------------------- policy, attempts

FAILS_FIRST = (
    'echo "$CRUNCH_ATTEMPT $CRUNCH_LAST_REASON" >> attempts.txt\n'
    'if [ "$CRUNCH_ATTEMPT" = 1 ]; then exit 3; fi\n'
    "cp attempts.txt out.txt\n"
)


def test_the_second_run_knows_its_attempt_and_why_the_first_failed(crunch: Crunch) -> None:
    crunch.project("Again", FAILS_FIRST, max_attempts=2, retry_delay=0)
    dataset = crunch.dataset("again", "one")

    result = crunch.run("loop", "--quiet")

    assert result.returncode == 0, result.stderr
    # The first run had no reason before it; the second knows the first exited non-zero.
    assert crunch.stored(dataset)["out.txt"] == "1 \n2 exit-code\n"
    assert row(dataset["slug"]).attempts == 2


def test_a_changed_policy_changes_what_the_next_fail_does(crunch: Crunch) -> None:
    project = crunch.project("Policy", "exit 3\n", max_attempts=5, retry_delay=0)
    first, second = (crunch.dataset("policy", name)["slug"] for name in ("a", "b"))

    crunch.run("run", first, "--quiet")
    assert (row(first).state, row(first).attempts) == ("pending", 1)  # default: retried

    crunch.api(
        "PATCH", f"projects/{project['slug']}/", retry_policy={"exit-code": {"retry": False}}
    )
    crunch.run("run", second, "--quiet")

    assert (row(second).state, row(second).attempts) == ("failed", 1)
    assert reason_of(second) == ("exit-code", "3")


SNAKEFILE = """\
rule all:
    input: "out.txt"

rule sized:
    output: "out.txt"
    resources:
        mem_mb=lambda wildcards, attempt: 1000 * attempt
    shell: "test {resources.mem_mb} -ge 2000 && echo {resources.mem_mb} > {output}"
"""


def test_a_snakefile_reads_the_attempt_in_its_resources(crunch: Crunch) -> None:
    pytest.importorskip("snakemake")
    crunch.project("Sized", SNAKEFILE, workflow_kind="snakemake", max_attempts=2, retry_delay=0)
    dataset = crunch.dataset("sized", "one")

    result = crunch.run("loop", "--quiet", "--cores", "1")

    assert result.returncode == 0, result.stderr
    assert reason_of(dataset["slug"]) == ("exit-code", "1")  # attempt 1: 1000 MB, too little
    assert crunch.stored(dataset)["out.txt"] == "2000\n"


def test_the_client_enforces_memory_with_a_cgroup_of_its_own(crunch: Crunch) -> None:
    """No container, no batch system: --memory puts the workflow in a cgroup the client
    makes (root on cgroup v1, or a delegated v2), and its OOM kill reads as out-of-memory."""
    from crunchclient.worker.workflow.memcage import MemoryCage

    probe = MemoryCage.make(128 * MiB, "probe")
    if probe is None:
        pytest.skip("the client cannot make a memory cgroup here (not root on v1, no delegated v2)")
    probe.remove()
    crunch.project("Caged", ALLOCATES, max_attempts=1)
    slug = crunch.dataset("caged", "one")["slug"]

    result = crunch.run("loop", "--quiet", "--memory", "128m")

    assert result.returncode == 10, result.stderr
    fail = last_fail(slug)
    assert (fail.reason, fail.reason_detail, fail.memory) == (
        "out-of-memory",
        "oom_kill",
        128 * MiB,
    )
    assert not list(Path(probe.folder.parent).glob("crunch-*"))  # each cage is removed
