"""A real single-node Slurm cluster (scripts/slurm-cluster.sh) and helpers for its tests.

The cluster is started when it is not running. Where it cannot start (no slurm-wlm, not
root), the Slurm tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clientkit import ROOT, Crunch, crunch  # noqa: F401

SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"
HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``), one worker runs every Slurm test: the
    cluster is started once, and its one node is not shared by two tests' jobs."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """The environment that reaches the cluster (SLURM_CONF), starting it if need be."""
    try:
        result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
        problem = result.stderr.strip() if result.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        result, problem = None, str(exc)
    if problem or result is None:
        message = f"no Slurm cluster: {SCRIPT.name} failed: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = dict(re.findall(r"^export (\w+)=(.*)$", result.stdout, re.MULTILINE))
    os.environ.update(env)  # for squeue and scancel run by the tests themselves
    return env


@pytest.fixture
def cluster(slurm: dict[str, str], crunch: Crunch, tmp_path: Path) -> Iterator[Cluster]:  # noqa: F811
    """Run ``crunch submit`` as a user would; cancel the test's jobs afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    name = f"crunch-test-{os.getpid()}-{tmp_path.name}"[:60]
    yield Cluster(crunch=crunch, slurm=slurm, home=home, job_name=name)
    subprocess.run(["scancel", "--name", name], capture_output=True)


class Cluster:
    def __init__(self, *, crunch: Crunch, slurm: dict[str, str], home: Path, job_name: str):  # noqa: F811
        self.crunch = crunch
        self.home = home
        self.job_name = job_name
        # No CRUNCH_* here: the tasks can learn the settings from the private file only.
        self.env = (
            {k: v for k, v in crunch.env.items() if not k.startswith("CRUNCH_")}
            | slurm
            | {"HOME": str(home)}
        )

    def submit_args(self, *args: str) -> list[str]:
        c = self.crunch
        return [
            "submit", "--url", c.url, "--token", c.token,
            "--storage-settings", str(c.settings_file), "--job-name", self.job_name,
            "--directory", str(c.work / "tasks"), "--output", str(c.work / "task-%A_%a.out"),
            *args,
        ]  # fmt: skip

    def submit(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.crunch.run(*self.submit_args(*args), env=self.env, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return self.crunch.start(*self.submit_args(*args), env=self.env)

    def tasks(self) -> list[tuple[str, str]]:
        """(job_task, state) of this test's tasks in the queue now."""
        out = subprocess.run(
            ["squeue", "--noheader", "--array", "--name", self.job_name, "--format=%i|%t"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return [tuple(line.split("|", 1)) for line in out.split()]  # type: ignore[misc]

    def outputs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.crunch.work.glob("task-*.out"))
        )


def job_id_of(stdout: str) -> str:
    match = re.search(r"Submitted job (\d+)", stdout)
    assert match, stdout
    return match.group(1)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, why: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:g}s; {why()}")
