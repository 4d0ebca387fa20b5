"""Cancelling a job that ended meanwhile is no error: Slurm forgot its id, nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from crunchclient.exceptions import SchedulerError
from crunchclient.launchers.slurm import SlurmLauncher


def fake_scancel(tmp_path: Path, message: str) -> str:
    script = tmp_path / "scancel"
    script.write_text(f"#!/bin/sh\necho 'scancel: error: {message}' >&2\nexit 1\n")
    script.chmod(0o755)
    return str(script)


def test_a_job_gone_already_is_cancelled_quietly(tmp_path: Path) -> None:
    gone = "Kill job error on job id 125: Invalid job id specified"
    SlurmLauncher(scancel=fake_scancel(tmp_path, gone)).cancel("125")


def test_other_refusals_are_said(tmp_path: Path) -> None:
    launcher = SlurmLauncher(scancel=fake_scancel(tmp_path, "Access/permission denied"))
    with pytest.raises(SchedulerError, match="permission denied"):
        launcher.cancel("125")
