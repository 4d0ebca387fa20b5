"""The "Using crunch from Python" code of docs/how-to/host-project.md runs in a Django
project that is not the testproject: tests/hostproject/, in a pytest of its own (its
settings, its database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs_in_a_host_project(tmp_path: Path) -> None:
    env = {**os.environ, "HOSTPROJECT_MEDIA": str(tmp_path / "media")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for name in [name for name in env if name.startswith("PYTEST_XDIST")]:
        del env[name]  # a pytest of its own, not one of this run's xdist workers
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--ds", "tests.hostproject.settings", "--noconftest",
            "-p", "no:randomly", "-p", "no:cacheprovider", "-q",
            "tests/hostproject/example.py",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
