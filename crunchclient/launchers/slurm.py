"""SlurmLauncher: job arrays through sbatch, squeue and scancel."""

from __future__ import annotations

import math
import shlex
import subprocess
from pathlib import Path

from crunchclient.exceptions import SchedulerError
from crunchclient.launchers.base import JobSpec, Launcher, Tasks

QUEUED_STATES = {"PD", "RQ", "RH", "RF", "S", "SE"}
"""squeue's compact states of a task that has not started (or waits to start again)."""

TIMEOUT = 60.0  # seconds for one Slurm command: a busy controller answers slowly


def slurm_time(seconds: float) -> str:
    """Seconds as sbatch's --time: D-HH:MM:SS, rounded up to the second."""
    total = math.ceil(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def slurm_message(stderr: str) -> str:
    """Slurm's own error lines as one line, without the repeated 'sbatch: error:' prefix."""
    lines = []
    for raw in stderr.strip().splitlines():
        line = raw.strip()
        for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: "):
            line = line.removeprefix(prefix)
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or "no message"


class SlurmLauncher(Launcher):
    """Submit ``crunch loop`` as a Slurm job array."""

    name = "Slurm"

    def __init__(self, *, sbatch: str = "sbatch", squeue: str = "squeue", scancel: str = "scancel"):
        self.sbatch, self.squeue, self.scancel = sbatch, squeue, scancel

    def script(self, spec: JobSpec) -> str:
        options = [
            f"--job-name={spec.name}",
            f"--array=1-{spec.tasks}",
            f"--time={slurm_time(spec.wall_seconds)}",
            # B: the batch shell, which exec's the loop: it releases its dataset and stops.
            f"--signal=B:TERM@{math.ceil(spec.signal_seconds)}",
        ]
        for option, value in (
            ("partition", spec.partition), ("account", spec.account), ("qos", spec.qos),
            ("nodes", spec.nodes), ("ntasks", spec.ntasks),
            ("cpus-per-task", spec.cpus_per_task), ("mem", spec.mem), ("gres", spec.gres),
            ("constraint", spec.constraint), ("output", spec.output),
        ):  # fmt: skip
            if value is not None:
                options.append(f"--{option}={value}")
        if spec.exclusive:
            options.append("--exclusive")
        options += spec.extra
        lines = [
            "#!/bin/bash",
            f"# Written by 'crunch submit': {spec.tasks} task(s), each running {spec.runs}.",
            *(f"#SBATCH {option}" for option in options),
            "set -e",
            f"# {', '.join(spec.env_names) or 'The settings'}: from a file only you can read.",
            "set -a",
            f". {shlex.quote(str(spec.env_file))}",
            "set +a",
            *spec.setup,
            "# exec: Slurm's signal before the wall time reaches the loop itself, which then",
            "# releases its dataset without spending an attempt.",
            f"exec {shlex.join(spec.command)}",
        ]
        return "\n".join(lines) + "\n"

    def submit(self, script: Path, *, tasks: int) -> str:
        out = self.call(self.sbatch, "--parsable", f"--array=1-{tasks}", str(script))
        job_id = out.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise SchedulerError(f"sbatch answered {out.strip()!r}, not a job id.")
        return job_id

    def poll(self, job_ids: list[str]) -> Tasks:
        if not job_ids:
            return Tasks()
        # Our own jobs, one line per array task; a job id Slurm forgot is no error here.
        out = self.call(self.squeue, "--me", "--noheader", "--array", "--format=%F|%t")
        wanted = set(job_ids)
        queued = running = 0
        for line in out.splitlines():
            array_id, _, state = line.strip().partition("|")
            if array_id in wanted:
                if state in QUEUED_STATES:
                    queued += 1
                else:
                    running += 1
        return Tasks(queued=queued, running=running)

    def cancel(self, job_id: str, *, queued_only: bool = False) -> None:
        """Cancel the job's tasks; one that ended meanwhile (Slurm no longer knows its id)
        has nothing left to cancel."""
        try:
            self.call(self.scancel, *(["--state=PENDING"] if queued_only else []), job_id)
        except SchedulerError as exc:
            if "Invalid job id" not in str(exc):
                raise

    def watch_hint(self, job_id: str) -> str:
        return f"squeue -j {job_id}"

    def call(self, *command: str) -> str:
        """Run one Slurm command; its refusal is a SchedulerError holding Slurm's message."""
        tool = Path(command[0]).name
        try:
            result = subprocess.run(
                command,
                check=False,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise SchedulerError(
                f"{tool!r} is not installed here: run 'crunch submit' on a Slurm login node."
            ) from None
        except subprocess.TimeoutExpired:
            raise SchedulerError(f"{tool} did not answer within {TIMEOUT:g}s.") from None
        if result.returncode:
            raise SchedulerError(
                f"{tool} failed (exit code {result.returncode}): {slurm_message(result.stderr)}"
            )
        return result.stdout
