"""The GPUs and CPUs a loop with slots shares out: each slot its own GPUs, never shared.

The GPUs are those the node or the scheduler gives this process, read from the
environment (no ``nvidia-smi``): ``CUDA_VISIBLE_DEVICES``, else Slurm's
``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``, else AMD's ``GPU_DEVICE_ORDINAL`` /
``ROCR_VISIBLE_DEVICES``. A slot's GPUs reach its workflow as ``CUDA_VISIBLE_DEVICES``,
``ROCR_VISIBLE_DEVICES`` and ``CRUNCH_GPUS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from crunchclient.exceptions import ConfigurationError
from crunchclient.settings.config import ClientConfig

SOURCES = (
    "CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL",
    "ROCR_VISIBLE_DEVICES",
)  # fmt: skip
"""Where the GPU ids come from, the first set one wins."""
NONE = {"", "none", "nodevfiles", "-1"}  # what the variables hold when no GPU is given


@dataclass(frozen=True)
class Visible:
    """The GPU ids this process may use, and the variable that said so."""

    ids: tuple[str, ...]
    source: str

    def describe(self) -> str:
        shown = ",".join(self.ids) or "no GPU"
        return f"{self.source}={shown}" if self.source else "no GPU variable set"


def visible(environ: Mapping[str, str] | None = None) -> Visible:
    """The GPUs of this process: the ids of the first variable of SOURCES that is set."""
    env = os.environ if environ is None else environ
    for name in SOURCES:
        if name not in env:
            continue
        text = env[name].strip()
        if text.lower() in NONE:
            return Visible((), name)
        ids = tuple(part.strip() for part in text.split(",") if part.strip())
        return Visible(tuple(dict.fromkeys(ids)), name)
    return Visible((), "")


def cpu_count() -> int:
    """The CPUs this process may run on (Slurm's and taskset's affinity), else the node's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slot_count(config: ClientConfig, gpus: Visible, cpus: int) -> int:
    """``--slots`` as a number: ``auto`` fills the node, CPUs by cores per slot, capped by
    GPUs by GPUs per slot."""
    if config.slots != "auto":
        return config.slots
    count = cpus // config.cores
    if count < 1:
        raise ConfigurationError(
            f"--slots auto: this node gives {cpus} CPU(s), fewer than --cores-per-slot "
            f"{config.cores}: pass a smaller --cores-per-slot."
        )
    if config.gpus_per_slot:
        count = min(count, len(gpus.ids) // config.gpus_per_slot)
    return max(count, 1)


def split(gpus: Visible, slots: int, per_slot: int) -> list[tuple[str, ...]]:
    """Each slot's own ``per_slot`` GPUs, disjoint; refused when there are too few."""
    needed = slots * per_slot
    if needed > len(gpus.ids):
        raise ConfigurationError(
            f"--gpus-per-slot {per_slot} with {slots} slot(s) needs {needed} GPU(s), but this "
            f"process may use {len(gpus.ids)} ({gpus.describe()}): pass fewer --slots or "
            "--gpus-per-slot, or ask the scheduler for more GPUs."
        )
    return [gpus.ids[slot * per_slot : (slot + 1) * per_slot] for slot in range(slots)]


def slot_configs(
    config: ClientConfig, environ: Mapping[str, str] | None = None, cpus: int | None = None
) -> list[ClientConfig]:
    """One config per slot: its number and its GPUs. A loop of one slot keeps ``slot``
    None (its statuses name no slot), and GPUs only when ``--gpus-per-slot`` asks."""
    found = visible(environ)
    slots = slot_count(config, found, cpu_count() if cpus is None else cpus)
    gpu_sets: list[tuple[str, ...] | None] = [None] * slots
    if config.gpus_per_slot:
        gpu_sets = list(split(found, slots, config.gpus_per_slot))
    if slots == 1:
        return [replace(config, slots=1, gpus=gpu_sets[0])]
    return [replace(config, slots=slots, slot=slot, gpus=gpu_sets[slot]) for slot in range(slots)]


def workflow_env(config: ClientConfig) -> dict[str, str]:
    """The variables that tell a workflow its slot and its GPUs."""
    env: dict[str, str] = {}
    if config.slot is not None:
        env["CRUNCH_SLOT"] = str(config.slot)
    if config.gpus is not None:
        ids = ",".join(config.gpus)
        env.update(CUDA_VISIBLE_DEVICES=ids, ROCR_VISIBLE_DEVICES=ids, CRUNCH_GPUS=ids)
    return env
