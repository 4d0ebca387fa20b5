"""``crunch project set|pause|resume`` and ``crunch release`` through the real console script,
against a live server and local storage."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crunch.choices import DatasetState, Stage
from crunch.models import Dataset, Project, Status, WorkflowChange
from tests.clientkit import CRUNCH, Crunch, error_line

pytestmark = pytest.mark.django_db(transaction=True)

PAUSED = (
    "CommandError: Project 'p' is paused: it hands out no dataset until a maintainer runs "
    "'crunch project resume p'."
)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def nothing_claimed(project: str = "p") -> None:
    rows = Dataset.objects.filter(project__slug=project).values_list("state", "attempts")
    assert set(rows) == {("pending", 0)}
    assert not Status.objects.filter(dataset__project__slug=project).exists()


def test_project_set(crunch: Crunch, tmp_path: Path) -> None:
    crunch.project("P", "echo old\n", is_public=True)
    workflow = tmp_path / "new.sh"
    workflow.write_text("echo new > new.txt\n")
    env = crunch.maintainer_env
    result = crunch.run(
        "project", "set", "p", "--workflow", str(workflow), "--max-attempts", "5",
        "--retry-delay", "30", "--private", env=env,
    )  # fmt: skip
    project = Project.objects.get(slug="p")
    change = WorkflowChange.objects.filter(project=project).first()
    assert change is not None and change.previous == "echo old"  # as the page shows them:
    old, new = change.previous_sha256[:12], project.workflow_sha256[:12]
    assert ok(result) == (
        f"Project 'p': workflow {old} -> {new} (SHA-256), max attempts 3 -> 5, "
        "retry delay 0s -> 30s, now private.\n"
    )
    assert (project.workflow, project.max_attempts, project.retry_delay, project.is_public) == (
        "echo new > new.txt", 5, 30, False,
    )  # fmt: skip
    assert ok(crunch.run("project", "set", "p", "--max-attempts", "5", env=env)) == (
        "Project 'p': nothing changed (it already had these values).\n"
    )

    # Bad values: refused before any call (2), by the server (3); no role (4); no project (7).
    for args, code, line in [
        (["--max-attempts", "0"], 2,
         "CommandError: --max-attempts '0' is not a whole number of at least 1."),
        (["--retry-delay", "soon"], 2,
         "CommandError: --retry-delay 'soon' is not a whole number of at least 0."),
        ([], 2, "CommandError: Nothing to change: give --workflow, --container, "
         "--max-attempts, --retry-delay, --retry, --public or --private."),
        (["--workflow", str(tmp_path / "missing.sh")], 2, None),
    ]:  # fmt: skip
        result = crunch.run("project", "set", "p", *args, env=env)
        assert result.returncode == code, result.stderr
        assert line is None or error_line(result) == line
    result = crunch.run("project", "set", "p", "--max-attempts", str(2**40), env=env)
    assert result.returncode == 3
    assert "max_attempts: Ensure this value is less than or equal to 2147483647." in error_line(
        result
    )
    result = crunch.run("project", "set", "p", "--max-attempts", "2")  # the worker's token
    assert result.returncode == 4, result.stderr
    result = crunch.run("project", "set", "nope", "--max-attempts", "2", env=env)
    assert (result.returncode, error_line(result)) == (
        7, "CommandError: No project has the slug 'nope'.",
    )  # fmt: skip
    project.refresh_from_db()
    assert project.max_attempts == 5


def test_a_projects_container_is_set_through_the_cli_and_each_change_kept(
    crunch: Crunch,
) -> None:
    env = crunch.maintainer_env
    made = crunch.run("add-project", "Boxed", "--container", "docker://rocker/r-ver:4.4", env=env)
    assert ok(made) == "boxed\n"
    assert Project.objects.get(slug="boxed").container == "docker://rocker/r-ver:4.4"
    assert ok(crunch.run("project", "set", "boxed", "--container", "/images/r.sif", env=env)) == (
        "Project 'boxed': container docker://rocker/r-ver:4.4 -> /images/r.sif.\n"
    )
    assert ok(crunch.run("project", "set", "boxed", "--container", "", env=env)) == (
        "Project 'boxed': container /images/r.sif -> none.\n"
    )
    changes = WorkflowChange.objects.filter(project__slug="boxed").order_by("id")
    assert [(c.previous_container, c.container) for c in changes] == [
        ("", "docker://rocker/r-ver:4.4"),
        ("docker://rocker/r-ver:4.4", "/images/r.sif"),
        ("/images/r.sif", ""),
    ]

    # Refused by the server (3), in one line; nothing changed.
    result = crunch.run("project", "set", "boxed", "--container=--privileged", env=env)
    assert result.returncode == 3, result.stderr
    assert "starts with '-', which a container runtime would read as an option" in (
        error_line(result)
    )
    result = crunch.run("add-project", "Spaced", "--container", "a b", env=env)
    assert result.returncode == 3, result.stderr
    assert "holds ' ': give an image name or path without spaces" in error_line(result)
    assert not Project.objects.filter(slug="spaced").exists()
    result = crunch.run("project", "set", "boxed", "--container", "img:1")  # a worker's token
    assert result.returncode == 4, result.stderr
    assert Project.objects.get(slug="boxed").container == ""


def test_pause_and_resume(crunch: Crunch) -> None:
    crunch.project("P", "echo done > done.txt\n")
    for name in ("a", "b"):
        crunch.dataset("p", name)
    env = crunch.maintainer_env
    assert ok(crunch.run("project", "pause", "p", env=env)) == (
        "Project 'p' paused: it hands out no dataset; running ones finish. "
        "Resume with: crunch project resume p\n"
    )
    assert ok(crunch.run("project", "pause", "p", env=env)) == "Project 'p' is already paused.\n"

    result = crunch.run("loop", "--project", "p")
    assert (result.returncode, error_line(result)) == (3, PAUSED)
    result = crunch.run("run", "p:a")
    assert (result.returncode, error_line(result)) == (3, PAUSED)  # not 8: nobody holds it
    result = crunch.run("loop")  # every project: the paused one is skipped
    assert ok(result).endswith("(nothing pending).\n")
    assert "Processed 0 dataset(s)" in result.stdout
    nothing_claimed()

    status = ok(crunch.run("status", "--project", "p"))
    assert "Paused: it hands out nothing; crunch project resume p\n" in status
    assert ok(crunch.run("why", "p:a")) == (
        "Project 'p' is paused: it hands out no dataset until it is resumed.\n"
        "To move it: crunch project resume p\n"
    )

    assert ok(crunch.run("project", "resume", "p", env=env)) == (
        "Project 'p' resumed: its pending datasets are handed out again.\n"
    )
    assert "Paused" not in ok(crunch.run("status", "--project", "p"))
    ok(crunch.run("loop", "--project", "p"))
    assert set(Dataset.objects.values_list("state", flat=True)) == {DatasetState.COMPLETED}


def wait_for(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_release_a_dataset_whose_client_was_killed(crunch: Crunch) -> None:
    fast = crunch.work / "fast"
    crunch.project("P", f"test -e {fast} || sleep 60\necho done > done.txt\n")
    crunch.dataset("p", "slow")
    loop = subprocess.Popen(
        [CRUNCH, "loop", "--project", "p"], env=crunch.env, cwd=crunch.work,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: Dataset.objects.filter(slug="p:slow", stage=Stage.WORKFLOW).exists())
    finally:
        os.killpg(loop.pid, signal.SIGKILL)  # kill -9: the client and its workflow
        loop.wait()
    dataset = Dataset.objects.get(slug="p:slow")
    assert (dataset.state, dataset.attempts) == (DatasetState.RUNNING, 1)

    result = crunch.run("release", "p:slow")  # the worker's token: not a maintainer's
    assert result.returncode == 4, result.stderr
    result = crunch.run("release", "p:slow", env=crunch.maintainer_env)
    assert ok(result) == (
        f"Released 'p:slow' from {dataset.claim_holder}: it is pending again (the attempt is "
        "not counted) and goes to the next claim.\n"
    )
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.claim_id) == (DatasetState.PENDING, 0, None)
    assert Status.objects.filter(dataset=dataset).last().note == "Released by crunch-maintainer."

    fast.touch()
    ok(crunch.run("loop", "--project", "p"))
    dataset.refresh_from_db()
    assert dataset.state == DatasetState.COMPLETED
    assert (crunch.media / dataset.base_file_path / "done.txt").read_text() == "done\n"

    result = crunch.run("release", "p:slow", env=crunch.maintainer_env)
    assert (result.returncode, error_line(result)) == (
        3,
        "CommandError: Dataset 'p:slow' is completed, not running: there is no claim to release.",
    )
    result = crunch.run("release", "p:nope", env=crunch.maintainer_env)
    assert result.returncode == 7


def test_the_retry_policy_through_the_cli(crunch: Crunch) -> None:
    """add-project --retry, project set --retry (and =default), project show; then the next
    Fail follows the changed rule."""
    env = crunch.maintainer_env
    made = crunch.run("add-project", "Mapped", "--retry", "exit-code=never", env=env)
    assert ok(made) == "mapped\n"
    assert Project.objects.get(slug="mapped").retry_policy == {"exit-code": {"retry": False}}

    result = crunch.run(
        "project", "set", "mapped", "--retry", "out-of-memory=retry,delay=600",
        "--retry", "input-missing=retry,free", "--retry", "exit-code=default", env=env,
    )  # fmt: skip
    assert ok(result) == (
        "Project 'mapped': exit-code never -> retry,spend,delay=backoff, out-of-memory "
        "retry,spend,delay=backoff -> retry,spend,delay=600, input-missing never -> "
        "retry,free,delay=backoff.\n"
    )
    assert Project.objects.get(slug="mapped").retry_policy == {
        "out-of-memory": {"retry": True, "delay": 600},
        "input-missing": {"retry": True, "spend": False},
    }
    shown = ok(crunch.run("project", "show", "mapped", env=env)).splitlines()
    assert shown[3] == "Retry policy (crunch project set --retry REASON=...):"
    assert "  out-of-memory  retry,spend,delay=600  (set for this project)" in shown
    assert "  cancelled      retry,free,delay=0" in shown
    assert "  tool-missing   never" in shown

    # Refused before any call (2), by role (4); nothing changed.
    for value, line in [
        ("oom=retry", "CommandError: --retry 'oom=retry': give REASON=retry|never[,free|spend]"
         "[,delay=SECONDS|backoff], or REASON=default; reasons: exit-code, signal, "
         "out-of-memory, time-limit, lost-lease, input-missing, tool-missing, transfer, "
         "cancelled, results, unknown."),
        ("signal=retry,twice", "CommandError: --retry 'signal=retry,twice': 'twice' is not one "
         "of REASON=retry|never[,free|spend][,delay=SECONDS|backoff], or REASON=default."),
    ]:  # fmt: skip
        result = crunch.run("project", "set", "mapped", "--retry", value, env=env)
        assert (result.returncode, error_line(result)) == (2, line)
    result = crunch.run("project", "set", "mapped", "--retry", "signal=never")  # a worker
    assert result.returncode == 4, result.stderr
    assert "signal" not in Project.objects.get(slug="mapped").retry_policy

    # The changed rule applies to the next Fail: input-missing is retried, for free.
    crunch.dataset("mapped", "empty")
    claimed = crunch.api("POST", "projects/mapped/next/", holder="t")
    crunch.api(
        "POST", "statuses/", dataset=claimed["dataset"]["id"], claim=claimed["claim"]["id"],
        stage=1, state=3, reason="input-missing", note="The input folder is empty.",
    )  # fmt: skip
    dataset = Dataset.objects.get(slug="mapped:empty")
    assert (dataset.state, dataset.attempts, dataset.last_reason) == (
        "pending", 0, "input-missing",
    )  # fmt: skip
