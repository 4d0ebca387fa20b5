"""Issue 27: one ``crunch loop --slots N`` runs N datasets at once, as real subprocesses
against a real server: GPUs split without overlap, SIGTERM releases every slot's dataset,
a hung slot is stopped while the others go on, --max-datasets counts across slots."""

from __future__ import annotations

import json

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import SIX, Crunch, statuses

pytestmark = pytest.mark.django_db(transaction=True)

# Each workflow says where it ran: its slot, its GPUs, and how many ran beside it.
REPORT = (
    'printf \'{"slot": "%s", "cuda": "%s", "rocr": "%s", "gpus": "%s", "cores": "%s"}\' '
    '"$CRUNCH_SLOT" "$CUDA_VISIBLE_DEVICES" "$ROCR_VISIBLE_DEVICES" "$CRUNCH_GPUS" '
    '"$CRUNCH_CORES" > where.json\nsleep "${SLOW:-0.3}"\n'
)


def where(crunch: Crunch, dataset: dict) -> dict[str, str]:
    return json.loads(crunch.stored(dataset)["where.json"])


def test_sixteen_datasets_four_slots_each_once_in_order(served_crunch: Crunch) -> None:
    crunch = served_crunch
    project = crunch.project("Slots", REPORT)
    datasets = [crunch.dataset(project["slug"], f"d{i:02}") for i in range(16)]
    result = crunch.run("loop", "--quiet", "--slots", "4", "--project", project["slug"])
    assert result.returncode == 0, result.stderr
    assert "Processed 16 dataset(s): 16 completed, 0 failed" in result.stdout
    for dataset in datasets:
        assert statuses(dataset["slug"]) == SIX
        rows = Status.objects.filter(dataset__slug=dataset["slug"]).order_by("created", "id")
        slot = where(crunch, dataset)["slot"]
        assert slot in {"0", "1", "2", "3"}
        if hasattr(Status, "slot"):
            assert {row.slot for row in rows} == {int(slot)}
    assert set(Dataset.objects.values_list("state", "attempts")) == {("completed", 1)}
