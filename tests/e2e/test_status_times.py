"""A loop sends a Workflow Start without waiting for its answer: it goes with the Upload
Start, or alone once it waited a little (batcher.LINGER) during a longer workflow. Either
way the history records it when it happened, and the pages see the stage while it runs."""

from __future__ import annotations

import time

import pytest

from crunch.models import Status
from tests.clientkit import SIX, Crunch, statuses

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_short_workflow_start_rides_with_the_upload_at_its_own_time(crunch: Crunch) -> None:
    project = crunch.project("Short", "sleep 0.5\necho done > out.txt\n")
    dataset = crunch.dataset(project["slug"], "d")
    result = crunch.run("loop", "--quiet", "--isolation", "none")
    assert result.returncode == 0, result.stderr
    assert statuses(dataset["slug"]) == SIX
    rows = {(s.stage, s.state): s for s in Status.objects.filter(dataset__slug=dataset["slug"])}
    ran = rows[(2, 2)].created - rows[(2, 1)].created  # Workflow Success - Workflow Start
    assert 0.4 < ran.total_seconds() < 5, ran


def test_a_long_workflow_shows_its_stage_while_it_runs(crunch: Crunch, tmp_path) -> None:
    mark = tmp_path / "running"
    project = crunch.project("Long", f"touch {mark}\nsleep 6\n")
    dataset = crunch.dataset(project["slug"], "d")
    client = crunch.start("loop", "--quiet", "--isolation", "none", "--bind", str(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = time.monotonic()
        while (2, 1) not in statuses(dataset["slug"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() - seen < 5  # a few seconds at most, not the workflow's end
        assert client.poll() is None  # the workflow still runs
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err
    assert statuses(dataset["slug"]) == SIX
