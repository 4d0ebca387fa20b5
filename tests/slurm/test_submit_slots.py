"""Issue 27: ``crunch submit --slots``: each task a whole node running one loop of N slots.

The job scripts are read from ``--dry-run``, run as a user runs it (no Slurm needed);
``test_slots.py`` runs them on the real Slurm.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from crunchclient.launchers import Launcher, Tasks, script, submit
from crunchclient.launchers.nodes import Slots
from crunchclient.server.connection import Connection
from tests.clientkit import CRUNCH, Crunch, clean_env, error_line

BASE = ["submit", "--url", "http://crunch.example", "--token", "t0ken", "--project", "p",
        "--time", "1h", "--dry-run"]  # fmt: skip


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRUNCH, *BASE, *args], env=clean_env(HOME=str(tmp_path)), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def script_of(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """The #SBATCH lines and the loop command (after 'exec') of a dry run."""
    result = dry_run(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (loop,) = (line for line in lines if line.startswith("exec "))
    assert not list(tmp_path.rglob("*.env"))  # a dry run writes nothing
    return {line for line in lines if line.startswith("#SBATCH ")}, loop


def loop_options(loop: str) -> str:
    """The loop's options after the ones every task gets."""
    return loop.split(" --quiet", 1)[1].strip()


def test_slots_4_exclusive_is_a_whole_node_running_one_loop_of_4_slots(tmp_path: Path) -> None:
    sbatch, loop = script_of(tmp_path, "--slots", "4", "--exclusive", "--cores-per-slot", "2")
    assert {"#SBATCH --exclusive", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
            "#SBATCH --array=1-1", "#SBATCH --mem=0"} <= sbatch  # fmt: skip
    assert not any(line.startswith("#SBATCH --cpus-per-task") for line in sbatch)  # the node's
    assert loop_options(loop) == "--slots 4 --cores-per-slot 2"
    assert " --cores " not in loop


def test_slots_without_exclusive_ask_for_slots_times_cores_and_memory(tmp_path: Path) -> None:
    sbatch, loop = script_of(
        tmp_path, "--slots", "4", "--cores-per-slot", "3", "--mem-per-slot", "1536m"
    )
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=12",
            "#SBATCH --mem=6G"} <= sbatch  # fmt: skip
    assert "#SBATCH --exclusive" not in sbatch
    assert loop_options(loop) == "--slots 4 --cores-per-slot 3 --mem-per-slot 1536m"


def test_gpus_per_slot_ask_for_slots_times_gpus_unless_gres_is_given(tmp_path: Path) -> None:
    sbatch, loop = script_of(tmp_path, "--slots", "4", "--exclusive", "--gpus-per-slot", "2")
    assert "#SBATCH --gres=gpu:8" in sbatch
    assert loop_options(loop) == "--slots 4 --gpus-per-slot 2"
    sbatch, _ = script_of(
        tmp_path, "--slots", "4", "--gpus-per-slot", "2", "--gres", "gpu:a100:8", "--mem", "64G"
    )
    assert {"#SBATCH --gres=gpu:a100:8", "#SBATCH --mem=64G", "#SBATCH --cpus-per-task=4"} <= (
        sbatch
    )


def test_slots_auto_fills_the_node_or_the_cpus_given(tmp_path: Path) -> None:
    sbatch, loop = script_of(tmp_path, "--slots", "auto", "--exclusive", "--gpus-per-slot", "1")
    assert {"#SBATCH --exclusive", "#SBATCH --nodes=1", "#SBATCH --mem=0"} <= sbatch
    assert not any(line.startswith(("#SBATCH --gres", "#SBATCH --cpus")) for line in sbatch)
    assert loop_options(loop) == "--slots auto --gpus-per-slot 1"
    sbatch, loop = script_of(
        tmp_path, "--slots", "auto", "--cpus-per-task", "16", "--cores-per-slot", "4",
        "--mem-per-slot", "2g",
    )  # fmt: skip
    assert {"#SBATCH --cpus-per-task=16", "#SBATCH --mem=8G"} <= sbatch  # 16 // 4 slots
    assert loop_options(loop) == "--slots auto --cores-per-slot 4 --mem-per-slot 2g"


def test_nodes_2_are_two_array_tasks_and_the_script_says_so(tmp_path: Path) -> None:
    result = dry_run(tmp_path, "--slots", "8", "--exclusive", "--nodes", "2")
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --array=1-2" in result.stdout.splitlines()
    assert (
        "# Written by 'crunch submit': 2 task(s), each running 'crunch loop --slots 8' "
        "on a whole node." in result.stdout.splitlines()
    )


def test_without_slots_the_script_is_as_before(tmp_path: Path) -> None:
    sbatch, loop = script_of(tmp_path, "--cpus-per-task", "2")
    assert not any(
        line.startswith(("#SBATCH --nodes", "#SBATCH --ntasks", "#SBATCH --exclusive"))
        for line in sbatch
    )
    assert loop.endswith(" --quiet --cores 2")


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["--slots", "0"], 2,
         "crunch submit: error: argument --slots: '0' is not a number of slots: "
         "use a whole number from 1, or auto."),
        (["--slots", "many"], 2,
         "crunch submit: error: argument --slots: 'many' is not a number of slots: "
         "use a whole number from 1, or auto."),
        (["--slots", "auto"], 2,
         "CommandError: --slots auto fills what each task is given: pass --exclusive "
         "(a whole node) or --cpus-per-task N."),
        (["--slots", "auto", "--cpus-per-task", "8", "--gpus-per-slot", "1"], 2,
         "CommandError: --slots auto --gpus-per-slot without --exclusive: say how many GPUs "
         "each task gets with --gres gpu:N."),
        (["--slots", "4", "--cores-per-slot", "2", "--cpus-per-task", "6"], 2,
         "CommandError: --cpus-per-task 6 is less than --slots 4 x --cores-per-slot 2 = 8."),
        (["--gpus-per-slot", "1"], 2,
         "CommandError: --gpus-per-slot needs --slots N (or --slots auto)."),
        (["--slots", "4", "--nodes", "2", "--jobs", "2"], 2,
         "CommandError: --nodes and --jobs both count tasks: pass one of them."),
        (["--nodes", "2"], 2,
         "CommandError: --nodes counts whole nodes: pass it with --slots or --exclusive "
         "(else --jobs)."),
        (["--slots", "4", "--mem-per-slot", "lots"], 2,
         "crunch submit: error: argument --mem-per-slot: 'lots' is not a memory size: "
         "use e.g. 512m or 8g."),
    ],
)  # fmt: skip
def test_bad_combinations_are_one_line_errors(
    tmp_path: Path, args: list[str], code: int, line: str
) -> None:
    result = dry_run(tmp_path, *args)
    assert result.returncode == code
    assert error_line(result) == line
    assert result.stdout == ""
    if line.startswith("CommandError"):
        assert result.stderr.strip() == line  # nothing but the line


class Recording(Launcher):
    """A scheduler that queues what it is given and runs none of it."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def script(self, spec: Any) -> str:
        return "#!/bin/sh\n"

    def submit(self, script: Path, *, tasks: int) -> str:
        self.submitted.append(tasks)
        return str(100 + len(self.submitted))

    def poll(self, job_ids: list[str]) -> Tasks:
        return Tasks(queued=sum(self.submitted))

    def cancel(self, job_id: str, *, queued_only: bool = False) -> None:
        pass


class Polled(Exception):
    pass


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("slots", "tasks"), [(Slots(given=True, count=4), 3), (Slots(), 5)])
def test_keep_submits_one_task_per_slots_pending_datasets(
    crunch: Crunch, tmp_path: Path, slots: Slots, tasks: int
) -> None:
    project = crunch.project("Kept", "true\n")
    for i in range(10):
        crunch.dataset(project["slug"], f"d{i}")
    request = script.Request(
        project=project["slug"], jobs=5, wall=3600, margin=60, url=crunch.url,
        token=crunch.token, storage_settings=None, directory=tmp_path, slots=slots,
    )  # fmt: skip
    launcher = Recording()
    prepared = script.prepare(request, launcher, standalone=True)

    def stop(seconds: float) -> None:
        raise Polled

    keeper = submit.Keeper(
        launcher=launcher, connection=Connection(crunch.url, crunch.token),
        prepared=prepared, request=request, keep=5, report=lambda line: None, sleep=stop,
    )  # fmt: skip
    with pytest.raises(Polled):
        keeper.run()
    # 10 pending: 3 nodes of 4 slots (ceil(10 / 4)), or 5 single loops (--keep 5).
    assert launcher.submitted == [tasks]
