"""Batch schedulers that start ``crunch loop`` jobs: one class per scheduler (Slurm now)."""

from __future__ import annotations

from crunchclient.exceptions import SchedulerError
from crunchclient.launchers.base import JobSpec, Launcher, Tasks
from crunchclient.launchers.slurm import SlurmLauncher

__all__ = ["JobSpec", "Launcher", "SchedulerError", "SlurmLauncher", "Tasks"]
