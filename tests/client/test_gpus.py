"""gpus.py: where a loop finds its GPUs and CPUs, and how it shares them among slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from crunchclient.exceptions import ConfigurationError
from crunchclient.settings.config import ClientConfig
from crunchclient.worker import gpus


def config(**fields: object) -> ClientConfig:
    return ClientConfig(url="http://x/", token="t", storage=None, directory=Path("w"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "ids", "source"),
    [
        ({}, (), ""),
        ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, ("0", "1", "2", "3"), "CUDA_VISIBLE_DEVICES"),
        ({"CUDA_VISIBLE_DEVICES": " 2, 3 ,"}, ("2", "3"), "CUDA_VISIBLE_DEVICES"),
        ({"CUDA_VISIBLE_DEVICES": "", "SLURM_JOB_GPUS": "0,1"}, (), "CUDA_VISIBLE_DEVICES"),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, (), "CUDA_VISIBLE_DEVICES"),
        ({"SLURM_JOB_GPUS": "4,5", "SLURM_STEP_GPUS": "5"}, ("5",), "SLURM_STEP_GPUS"),
        ({"SLURM_JOB_GPUS": "4,5", "ROCR_VISIBLE_DEVICES": "0"}, ("4", "5"), "SLURM_JOB_GPUS"),
        ({"ROCR_VISIBLE_DEVICES": "0,1"}, ("0", "1"), "ROCR_VISIBLE_DEVICES"),
        ({"GPU_DEVICE_ORDINAL": "1", "ROCR_VISIBLE_DEVICES": "0"}, ("1",), "GPU_DEVICE_ORDINAL"),
        (
            {"CUDA_VISIBLE_DEVICES": "GPU-a1,GPU-b2,GPU-a1"},
            ("GPU-a1", "GPU-b2"),
            "CUDA_VISIBLE_DEVICES",
        ),
    ],
)
def test_visible_gpus_from_the_first_variable_set(
    environ: dict[str, str], ids: tuple[str, ...], source: str
) -> None:
    assert gpus.visible(environ) == gpus.Visible(ids, source)


def test_split_gives_each_slot_its_own_gpus() -> None:
    found = gpus.Visible(("0", "1", "2", "3", "4"), "CUDA_VISIBLE_DEVICES")
    assert gpus.split(found, 2, 2) == [("0", "1"), ("2", "3")]
    assert gpus.split(found, 5, 1) == [("0",), ("1",), ("2",), ("3",), ("4",)]
    with pytest.raises(ConfigurationError, match=r"needs 6 GPU\(s\), but this process may use 5"):
        gpus.split(found, 3, 2)


def test_slot_configs_number_the_slots_and_split_the_gpus() -> None:
    environ = {"SLURM_JOB_GPUS": "0,1,2,3"}
    configs = gpus.slot_configs(config(slots=2, gpus_per_slot=2, cores=3), environ, cpus=8)
    assert [(c.slot, c.gpus, c.slots, c.cores) for c in configs] == [
        (0, ("0", "1"), 2, 3),
        (1, ("2", "3"), 2, 3),
    ]
    assert gpus.workflow_env(configs[1]) == {
        "CRUNCH_SLOT": "1", "CUDA_VISIBLE_DEVICES": "2,3", "ROCR_VISIBLE_DEVICES": "2,3",
        "CRUNCH_GPUS": "2,3",
    }  # fmt: skip


def test_one_slot_is_the_single_loop_named_by_no_slot() -> None:
    (only,) = gpus.slot_configs(config(), {"CUDA_VISIBLE_DEVICES": "0,1"}, cpus=4)
    assert (only.slot, only.gpus) == (None, None)
    assert gpus.workflow_env(only) == {}  # the node's GPUs, as they are
    (one,) = gpus.slot_configs(config(gpus_per_slot=1), {"CUDA_VISIBLE_DEVICES": "3,1"}, cpus=4)
    assert (one.slot, one.gpus) == (None, ("3",))


@pytest.mark.parametrize(
    ("fields", "environ", "cpus", "slots"),
    [
        ({"cores": 4}, {}, 64, 16),
        ({"cores": 3}, {}, 8, 2),
        ({"cores": 4, "gpus_per_slot": 1}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 64, 4),
        ({"cores": 4, "gpus_per_slot": 2}, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 4, 1),
        ({}, {}, 1, 1),
    ],
)
def test_auto_fills_the_node(
    fields: dict[str, int], environ: dict[str, str], cpus: int, slots: int
) -> None:
    configs = gpus.slot_configs(config(slots="auto", **fields), environ, cpus=cpus)
    assert len(configs) == slots


def test_auto_refuses_slots_bigger_than_the_node() -> None:
    with pytest.raises(ConfigurationError, match="this node gives 4 CPU"):
        gpus.slot_configs(config(slots="auto", cores=8), {}, cpus=4)
    with pytest.raises(ConfigurationError, match="needs 1 GPU"):
        gpus.slot_configs(config(slots="auto", gpus_per_slot=1), {}, cpus=4)
