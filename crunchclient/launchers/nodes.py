"""Whole nodes for ``crunch submit --slots``: what each task asks of the scheduler, and the
``crunch loop --slots`` it runs.

One task is one node running one loop with N slots, so the node is billed once and its
cores, GPUs and memory are shared out by the loop, not by N loops started by hand. Each
rule below that refuses a combination does so before anything is written or submitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from crunchclient.exceptions import ConfigurationError
from crunchclient.settings.sizes import UNITS, memory_bytes

__all__ = ["AUTO", "Slots", "memory_bytes", "slurm_memory"]

AUTO = "auto"


def slurm_memory(total: int) -> str:
    """Bytes as sbatch's --mem, in the largest unit that holds them exactly (at least M)."""
    for unit in ("T", "G", "M"):
        size = UNITS[unit.lower()]
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{math.ceil(total / UNITS['m'])}M"


@dataclass(frozen=True, kw_only=True)
class Slots:
    """``--slots`` and the per-slot options of ``crunch submit``, as given.

    ``count`` is None for ``auto``: the loop divides what the node gives it. ``given`` is
    False when ``--slots`` was not passed: the task then runs today's single loop.
    """

    given: bool = False
    count: int | None = 1
    cores: int | None = None  # --cores-per-slot
    gpus: int | None = None  # --gpus-per-slot
    memory: str | None = None  # --mem-per-slot, as the runner reads it
    exclusive: bool = False  # the task asks for its whole node
    nodes: int | None = None  # --nodes: that many tasks, each a whole node

    @property
    def whole_node(self) -> bool:
        return self.given or self.exclusive

    def check(self, *, cpus_per_task: int | None, gres: str | None, jobs: int | None) -> None:
        """Refuse the combinations the scheduler or the loop could not honour."""
        per_slot = [
            name
            for name, value in (
                ("--cores-per-slot", self.cores), ("--gpus-per-slot", self.gpus),
                ("--mem-per-slot", self.memory),
            )
            if value is not None
        ]  # fmt: skip
        if per_slot and not self.given:
            raise ConfigurationError(f"{per_slot[0]} needs --slots N (or --slots auto).")
        if self.nodes is not None and jobs is not None:
            raise ConfigurationError("--nodes and --jobs both count tasks: pass one of them.")
        if self.nodes is not None and not self.whole_node:
            raise ConfigurationError(
                "--nodes counts whole nodes: pass it with --slots or --exclusive (else --jobs)."
            )
        if self.count is None and not self.exclusive and cpus_per_task is None:
            raise ConfigurationError(
                "--slots auto fills what each task is given: pass --exclusive (a whole node) "
                "or --cpus-per-task N."
            )
        if self.count is None and self.gpus and not self.exclusive and gres is None:
            raise ConfigurationError(
                "--slots auto --gpus-per-slot without --exclusive: say how many GPUs each "
                "task gets with --gres gpu:N."
            )
        needed = (self.count or 0) * (self.cores or 1)
        if cpus_per_task is not None and self.count is not None and cpus_per_task < needed:
            raise ConfigurationError(
                f"--cpus-per-task {cpus_per_task} is less than --slots {self.count} x "
                f"--cores-per-slot {self.cores or 1} = {needed}."
            )
        if self.memory is not None:
            memory_bytes(self.memory)

    def per_task(self, cpus_per_task: int | None) -> int | None:
        """Datasets one task runs at once; None when only the node will say (auto)."""
        if not self.given:
            return 1
        if self.count is not None:
            return self.count
        if cpus_per_task is not None:
            return max(1, cpus_per_task // (self.cores or 1))
        return None

    def scheduler(self, given: dict[str, Any]) -> dict[str, Any]:
        """The scheduler options of each task: ``given`` (the user's own) win."""
        if not self.whole_node:
            return dict(given)
        options: dict[str, Any] = {"nodes": 1, "ntasks": 1, "exclusive": self.exclusive}
        slots = self.per_task(given.get("cpus_per_task"))
        if slots is not None and not self.exclusive and self.given:
            options["cpus_per_task"] = slots * (self.cores or 1)
        if slots is not None and self.gpus:
            options["gres"] = f"gpu:{slots * self.gpus}"
        if slots is not None and self.memory is not None:
            options["mem"] = slurm_memory(slots * memory_bytes(self.memory))
        elif self.exclusive:
            options["mem"] = "0"  # sbatch: all of the node's memory
        return options | given

    def loop_args(self) -> list[str]:
        """The ``crunch loop`` options that give each slot its share."""
        if not self.given:
            return []
        args = ["--slots", AUTO if self.count is None else str(self.count)]
        for option, value in (
            ("--cores-per-slot", self.cores), ("--gpus-per-slot", self.gpus),
            ("--mem-per-slot", self.memory),
        ):  # fmt: skip
            if value is not None:
                args += [option, str(value)]
        return args

    def runs(self, loop: str = "crunch loop") -> str:
        """What each task runs, as the script's comment and the submit message say it."""
        slots = "" if not self.given else f" --slots {AUTO if self.count is None else self.count}"
        node = " on a whole node" if self.exclusive else " on one node" if self.given else ""
        return f"'{loop}{slots}'{node}"
