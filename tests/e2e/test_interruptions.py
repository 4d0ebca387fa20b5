"""Issue 4's client half: SIGTERM winds a dataset down, a lost claim stops it, retries."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from crunch.models import Dataset, Status
from crunch.services import claims
from tests.clientkit import SIX, Crunch, error_line, statuses

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = 'sleep "${SLOW:-0}"\necho done > out.txt\n'


def wait_for_stage(slug: str, stage: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Status.objects.filter(dataset__slug=slug, stage=stage, state=1).exists():
            time.sleep(0.3)  # the workflow subprocess is starting
            return
        time.sleep(0.05)
    raise AssertionError(f"{slug} never reached stage {stage}")


def test_sigterm_fails_releases_and_a_later_loop_completes(crunch: Crunch) -> None:
    project = crunch.project("Slow", SLOW, max_attempts=1)
    dataset = crunch.dataset(project["slug"], "one", {"in.txt": "x"})
    client = crunch.start("loop", "--quiet", env={**crunch.env, "SLOW": "60"})
    wait_for_stage(dataset["slug"], 2)
    started = time.monotonic()
    client.send_signal(signal.SIGTERM)
    _out, err = client.communicate(timeout=20)
    assert time.monotonic() - started < 10  # the workflow was terminated, not waited for
    assert client.returncode == 130, err
    assert "Received SIGTERM - finishing" in err and "(send again to force)" in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "CommandError: Stopped by a signal after 0 dataset(s)."
    last = Status.objects.filter(dataset__slug=dataset["slug"]).last()
    assert (last.stage, last.state) == (2, 3) and "SIGTERM" in last.note
    row = Dataset.objects.get(slug=dataset["slug"])
    assert (row.state, row.attempts, row.claim_id) == ("pending", 0, None)
    assert "out.txt" not in crunch.stored(dataset)  # nothing uploaded
    again = crunch.run("loop", "--quiet")
    assert again.returncode == 0, again.stderr
    assert statuses(dataset["slug"])[-6:] == SIX
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"


# A workflow that takes its time to clean up when terminated, so the client is still
# winding down when the second signal arrives.
STUBBORN = "trap 'sleep 4; exit 1' TERM\nsleep 60 & wait\n"


def test_second_signal_exits_at_once(crunch: Crunch) -> None:
    project = crunch.project("Slow", STUBBORN)
    dataset = crunch.dataset(project["slug"], "one")
    client = crunch.start("next", "--quiet")
    wait_for_stage(dataset["slug"], 2)
    client.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=20)
    assert time.monotonic() - started < 3  # did not wait for the workflow's 4 s cleanup
    assert client.returncode == 128 + signal.SIGINT
    assert "Received SIGINT again - exiting now" in err


def test_lost_claim_stops_the_dataset_without_uploading(crunch: Crunch) -> None:
    project = crunch.project("Slow", SLOW)
    dataset = crunch.dataset(project["slug"], "one")
    client = crunch.start("next", "--quiet", "--heartbeat", "0.2", env={**crunch.env, "SLOW": "60"})
    wait_for_stage(dataset["slug"], 2)
    claims.release(Dataset.objects.get().claim_id, note="")  # an operator took it back
    out, err = client.communicate(timeout=20)
    assert client.returncode == 9, err
    assert error_line(client_result(client, out, err)) == (
        "CommandError: The server no longer holds the claim on dataset 'slow:one'; stopped without uploading."  # noqa: E501
    )
    assert statuses(dataset["slug"]) == [(1, 1), (1, 2), (2, 1)]
    assert "out.txt" not in crunch.stored(dataset)


def client_result(process, out: str, err: str):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_heartbeat_keeps_a_short_lease_alive(crunch: Crunch, settings: Any) -> None:
    settings.CRUNCH_LEASE_SECONDS = 5  # what status posts extend the lease to, as well
    project = crunch.project("Slow", SLOW)
    dataset = crunch.dataset(project["slug"], "one")
    client = crunch.start(
        "next", "--quiet", "--lease", "5", "--heartbeat", "0.5", env={**crunch.env, "SLOW": "6"}
    )
    reclaimed = 0
    while client.poll() is None:  # as other clients' claims would, all along
        reclaimed += claims.reclaim_expired()
        time.sleep(0.2)
    assert client.returncode == 0, client.stderr.read() if client.stderr else ""
    assert reclaimed == 0
    assert statuses(dataset["slug"]) == SIX


def test_retry_commands_put_failed_datasets_back(crunch: Crunch) -> None:
    project = crunch.project("Flaky", "exit 1\n", max_attempts=1)
    for name in ("a", "b", "c"):
        crunch.dataset(project["slug"], name)
    assert crunch.run("loop", "--quiet").returncode == 10
    assert set(Dataset.objects.values_list("state", flat=True)) == {"failed"}
    one = crunch.run("retry", "flaky:a", env=crunch.maintainer_env)
    assert (one.returncode, one.stdout.strip()) == (0, "Dataset 'flaky:a' is pending again.")
    rest = crunch.run("retry", "--project", "flaky", "--failed", env=crunch.maintainer_env)
    assert (rest.returncode, rest.stdout.strip()) == (
        0,
        "2 failed dataset(s) of project 'flaky' are pending again.",
    )
    assert set(Dataset.objects.values_list("state", flat=True)) == {"pending"}
    bad = crunch.run("retry", "--project", "flaky", env=crunch.maintainer_env)
    assert bad.returncode == 2 and "crunch retry --project P --failed" in error_line(bad)


def test_loop_limits(crunch: Crunch) -> None:
    project = crunch.project("Limits", SLOW)
    for name in ("a", "b", "c", "d"):
        crunch.dataset(project["slug"], name)
    first = crunch.run("loop", "--quiet", "--max-datasets", "1")
    assert first.returncode == 0, first.stderr
    assert "Processed 1 dataset(s)" in first.stdout and "reached --max-datasets 1" in first.stdout
    timed = crunch.run("loop", "--quiet", "--time-limit", "2s", env={**crunch.env, "SLOW": "1.2"})
    assert timed.returncode == 0, timed.stderr
    assert "Processed 1 dataset(s)" in timed.stdout
    assert "--time-limit 2s nearly reached" in timed.stdout
    assert Dataset.objects.filter(state="pending").count() == 2
