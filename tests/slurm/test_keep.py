"""Issue 14: ``crunch submit --keep 2`` keeps two tasks going until the project is done."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from crunch.models import Dataset
from tests.slurm.conftest import Cluster


@pytest.mark.django_db(transaction=True)
def test_keep_2_submits_more_as_tasks_end_never_more_than_2_and_exits_when_done(
    cluster: Cluster,
) -> None:
    # Two seconds a dataset: two tasks of 30 s each cannot finish all 40, so more must come.
    project = cluster.crunch.project("Kept", "sleep 2\necho done > out.txt\n")
    slugs = [
        cluster.crunch.dataset(project["slug"], f"d{i:02d}", {"in.txt": "x"})["slug"]
        for i in range(40)
    ]
    held: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # what Slurm itself shows, beside what the command reports
        while not stop.wait(0.5):
            held.append(len(cluster.tasks()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    keeper = cluster.start(
        "--project", project["slug"], "--keep", "2", "--time", "1m", "--margin", "30s",
        "--poll", "2", "--wait", "2",
    )  # fmt: skip
    try:
        out, err = keeper.communicate(timeout=200)
    finally:
        keeper.kill()
        stop.set()
        sampler.join()
    assert keeper.returncode == 0, err + cluster.outputs()
    assert "Traceback" not in err
    assert Dataset.objects.filter(slug__in=slugs, state="completed").count() == 40
    submissions = [line for line in out.splitlines() if line.startswith("Submitted job")]
    submitted = sum(int(line.split(": ", 1)[1].split()[0]) for line in submissions)
    assert len(submissions) >= 2 and submitted > 2, out  # more as earlier ones ended
    assert held and max(held) <= 2, held
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith(f"submitted {submitted} task(s) in {len(submissions)} job(s), at most 2 at once.")
    ), out
    assert not cluster.tasks()


@pytest.mark.django_db(transaction=True)
def test_keep_survives_a_failing_squeue_and_says_so(cluster: Cluster, tmp_path: Path) -> None:
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = shutil.which("squeue")
    assert real
    # The real squeue, except that the keeper's first call (--array) times out; the tasks'
    # own calls (their wall time) must not use up that failure.
    fake = wrappers / "squeue"
    fake.write_text(
        '#!/bin/sh\ncase "$*" in *--array*) ;; *) exec ' + f'{real} "$@";; esac\n'
        f'if [ ! -e "{tmp_path}/failed" ]; then touch "{tmp_path}/failed"\n'
        'echo "squeue: error: slurm_load_jobs error: Socket timed out on send/recv" >&2\n'
        f'exit 1\nfi\nexec {real} "$@"\n'
    )
    fake.chmod(0o755)
    cluster.env["PATH"] = f"{wrappers}:{cluster.env['PATH']}"
    project = cluster.crunch.project("Flaky", "echo done > out.txt\n")
    slugs = [
        cluster.crunch.dataset(project["slug"], f"d{i}", {"in.txt": "x"})["slug"] for i in range(2)
    ]
    result = cluster.submit("--project", project["slug"], "--keep", "1", "--time", "1m",
                            "--poll", "1", "--wait", "1", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr + cluster.outputs()
    assert (
        "squeue failed (exit code 1): slurm_load_jobs error: Socket timed out on send/recv; "
        "retrying in 5s"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert Dataset.objects.filter(slug__in=slugs, state="completed").count() == 2


@pytest.mark.django_db(transaction=True)
def test_keep_submits_nothing_while_the_project_is_paused_and_goes_on_when_resumed(
    cluster: Cluster,
) -> None:
    project = cluster.crunch.project("Paused", "echo done > out.txt\n")
    slug = project["slug"]
    slugs = [cluster.crunch.dataset(slug, f"d{i}", {"in.txt": "x"})["slug"] for i in range(2)]
    cluster.crunch.api("PATCH", f"projects/{slug}/", paused=True)
    cluster.env["PYTHONUNBUFFERED"] = "1"  # its lines as they come, not at exit
    keeper = cluster.start(
        "--project", slug, "--keep", "1", "--time", "1m", "--poll", "1", "--wait", "1"
    )  # fmt: skip
    try:
        assert keeper.stdout is not None
        first = keeper.stdout.readline()
        assert first.startswith(f"Project {slug!r} is paused: no task is submitted"), first
        time.sleep(3)  # three polls: nothing submitted, nothing queued
        assert not cluster.tasks()
        cluster.crunch.api("PATCH", f"projects/{slug}/", paused=False)
        out, err = keeper.communicate(timeout=120)
    finally:
        keeper.kill()
    assert keeper.returncode == 0, err + cluster.outputs()
    lines = out.splitlines()
    assert lines[0] == f"Project {slug!r} was resumed: submitting again.", out
    assert lines[1].startswith("Submitted job"), out
    assert Dataset.objects.filter(slug__in=slugs, state="completed").count() == 2
    assert "Traceback" not in err


@pytest.mark.django_db(transaction=True)
def test_a_plain_submit_of_a_paused_project_warns(cluster: Cluster) -> None:
    project = cluster.crunch.project("Held", "echo done > out.txt\n")
    slug = project["slug"]
    cluster.crunch.dataset(slug, "d0", {"in.txt": "x"})
    cluster.crunch.api("PATCH", f"projects/{slug}/", paused=True)
    result = cluster.submit("--project", slug, "--time", "1m", "--sbatch-arg=--hold")
    assert result.returncode == 0, result.stderr
    assert (
        f"Project {slug!r} is paused: its tasks find nothing to do and end at once if they "
        f"start before it is resumed ('crunch project resume {slug}')."
    ) in result.stderr
    assert "Submitted" in result.stdout
