"""Issue 27: one ``crunch loop --slots N`` runs N datasets at once. Real subprocesses
against a real server (gunicorn where several slots call at once): GPUs split without
overlap, SIGTERM releases every slot's dataset, a hung slot is stopped while the others
go on, --max-datasets counts across slots, bad options are one line."""

from __future__ import annotations

import json
import signal
import time

import pytest

from crunch.models import Dataset, Status
from crunch.services import claims
from tests.clientkit import SIX, Crunch, error_line, statuses
from tests.e2e.nodekit import pgrep

pytestmark = pytest.mark.django_db(transaction=True)

# Each workflow says where it ran (its slot, GPUs, cores) and when.
REPORT = (
    "start=$(date +%s.%N)\n"
    'sleep "${SLOW:-0.3}"\n'
    'printf \'{"slot": "%s", "cuda": "%s", "rocr": "%s", "gpus": "%s", "cores": "%s", '
    '"start": %s, "end": %s}\' "$CRUNCH_SLOT" "$CUDA_VISIBLE_DEVICES" '
    '"$ROCR_VISIBLE_DEVICES" "$CRUNCH_GPUS" "$CRUNCH_CORES" "$start" "$(date +%s.%N)" '
    "> where.json\n"
)
NO_GPUS = (
    "CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL",
    "ROCR_VISIBLE_DEVICES",
)  # fmt: skip


def where(crunch: Crunch, dataset: dict) -> dict:
    return json.loads(crunch.stored(dataset)["where.json"])


def gpu_env(crunch: Crunch, **given: str) -> dict[str, str]:
    """The client's environment with only the GPU variables ``given``."""
    env = {k: v for k, v in crunch.env.items() if k not in NO_GPUS}
    return {**env, **given}


def wait_for(check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("never happened")


def test_sixteen_datasets_four_slots_each_once_in_order(served_crunch: Crunch) -> None:
    crunch = served_crunch
    project = crunch.project("Slots", REPORT)
    datasets = [crunch.dataset(project["slug"], f"d{i:02}") for i in range(16)]
    result = crunch.run(
        "loop", "--quiet", "--slots", "4", "--cores-per-slot", "2", "--project", project["slug"]
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("Processed 16 dataset(s): 16 completed, 0 failed, in ")
    )
    used = set()
    for dataset in datasets:
        assert statuses(dataset["slug"]) == SIX
        ran = where(crunch, dataset)
        assert ran["cores"] == "2"
        slot = int(ran["slot"])
        used.add(slot)
        rows = Status.objects.filter(dataset__slug=dataset["slug"])
        assert {row.slot for row in rows} == {slot}  # every status names the slot it ran in
    assert used == {0, 1, 2, 3}
    assert set(Dataset.objects.values_list("state", "attempts")) == {("completed", 1)}


@pytest.mark.parametrize(
    "given",
    [{"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"SLURM_JOB_GPUS": "4,5,6,7"}],
    ids=["cuda", "slurm"],
)
def test_gpus_split_without_overlap(served_crunch: Crunch, given: dict[str, str]) -> None:
    crunch = served_crunch
    project = crunch.project("Gpus", REPORT)
    datasets = [crunch.dataset(project["slug"], f"d{i}") for i in range(6)]
    result = crunch.run(
        "loop", "--quiet", "--slots", "2", "--gpus-per-slot", "2",
        env={**gpu_env(crunch, **given), "SLOW": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ids = next(iter(given.values())).split(",")
    expected = {0: ",".join(ids[:2]), 1: ",".join(ids[2:])}
    runs = [where(crunch, dataset) for dataset in datasets]
    for ran in runs:
        assert ran["cuda"] == ran["rocr"] == ran["gpus"] == expected[int(ran["slot"])]
    overlapping = [
        (a, b) for a in runs for b in runs
        if a is not b and a["start"] < b["end"] and b["start"] < a["end"]
    ]  # fmt: skip
    assert overlapping  # the two slots did run at once
    for a, b in overlapping:
        assert not set(a["gpus"].split(",")) & set(b["gpus"].split(","))


def test_sigterm_releases_every_busy_slot(served_crunch: Crunch) -> None:
    crunch = served_crunch
    marker = "4242"
    project = crunch.project("Term", f"sleep {marker}7\n", max_attempts=1)
    datasets = [crunch.dataset(project["slug"], f"d{i}") for i in range(6)]
    client = crunch.start("loop", "--quiet", "--slots", "4", "--isolation", "none")
    try:
        wait_for(lambda: Status.objects.filter(stage=2, state=1).count() == 4)
        wait_for(lambda: len(pgrep(f"sleep {marker}7")) == 4)
        started = time.monotonic()
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert time.monotonic() - started < 10  # stopped, not waited for
    assert client.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "CommandError: Stopped by a signal after 0 dataset(s)."
    busy = [d["slug"] for d in datasets if Status.objects.filter(dataset__slug=d["slug"]).exists()]
    assert len(busy) == 4
    for slug in busy:
        assert statuses(slug)[-1] == (2, 3)  # its Workflow Fail: the note says SIGTERM
        assert "SIGTERM" in Status.objects.filter(dataset__slug=slug).last().note
    rows = Dataset.objects.values_list("state", "attempts", "claim_id")
    assert set(rows) == {("pending", 0, None)}  # released, no attempt spent
    assert pgrep(f"sleep {marker}7") == []


def test_a_hung_slot_is_stopped_while_the_others_complete(served_crunch: Crunch) -> None:
    crunch = served_crunch
    workflow = 'case "$CRUNCH_DATASET" in *:hang) sleep 600;; esac\nsleep 0.5\necho ok > ok.txt\n'
    project = crunch.project("Hang", workflow, max_attempts=1)
    hung = crunch.dataset(project["slug"], "hang")
    others = [crunch.dataset(project["slug"], f"d{i}") for i in range(6)]
    result = crunch.run("loop", "--quiet", "--slots", "3", "--timeout", "8s", "--isolation", "none")
    assert result.returncode == 10, result.stderr
    assert "Processed 7 dataset(s): 6 completed, 1 failed" in result.stdout
    assert Dataset.objects.get(slug=hung["slug"]).state == "failed"
    fail = Status.objects.filter(dataset__slug=hung["slug"]).last()
    assert (fail.stage, fail.state) == (2, 3) and "--timeout 8s" in fail.note
    for dataset in others:
        assert statuses(dataset["slug"]) == SIX
        done = Status.objects.filter(dataset__slug=dataset["slug"]).last()
        assert done.created < fail.created  # the others went on while it hung


def test_a_claim_lost_in_one_slot_stops_that_slot_only(served_crunch: Crunch, tmp_path) -> None:
    crunch = served_crunch
    mark = tmp_path / "hung-once"  # the first run hangs, the run after the release does not
    workflow = (
        f'case "$CRUNCH_DATASET" in *:hang) mkdir {mark} 2>/dev/null && sleep 600;; esac\n'
        "sleep 0.5\necho ok > ok.txt\n"
    )
    project = crunch.project("Lost", workflow)
    hung = crunch.dataset(project["slug"], "hang")
    others = [crunch.dataset(project["slug"], f"d{i}") for i in range(4)]
    client = crunch.start(
        "loop", "--quiet", "--slots", "2", "--heartbeat", "0.3", "--isolation", "none"
    )
    try:
        wait_for(lambda: Status.objects.filter(dataset__slug=hung["slug"], stage=2).exists())
        claims.release(Dataset.objects.get(slug=hung["slug"]).claim_id, note="")  # an operator
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err
    assert "lost:hang: the server dropped our claim; stopping the dataset" in err
    assert "The server no longer holds the claim on dataset 'lost:hang'" in err
    assert "Processed 5 dataset(s): 5 completed, 0 failed" in out
    for dataset in [hung, *others]:
        assert statuses(dataset["slug"])[-6:] == SIX
    assert Dataset.objects.get(slug=hung["slug"]).attempts == 1  # a release spends none


@pytest.mark.parametrize("slots", ["1", "2"])
def test_a_slot_whose_claim_was_lost_uploads_nothing(
    served_crunch: Crunch, tmp_path, slots: str
) -> None:
    """A claim released while the workflow ran (the heartbeat too slow to notice) sends no
    file over the dataset's folder: the slot learns it from its queued Workflow Start's
    answer, or waits for its Upload Start's when the claim was not confirmed within
    CONFIRMED_SECONDS. So does a single loop (--slots 1), whose Upload Start rides with
    its Upload Success only within that time."""
    crunch = served_crunch
    ended = tmp_path / "ended"
    workflow = f"echo late > late.txt\ntouch {ended}\nsleep 3\n"
    project = crunch.project("Late", workflow)
    dataset = crunch.dataset(project["slug"], "d")
    client = crunch.start(
        "loop", "--quiet", "--slots", slots, "--heartbeat", "60", "--isolation", "none",
        "--bind", str(tmp_path), "--max-datasets", "1",  # no second run of the released one
    )  # fmt: skip
    try:
        wait_for(ended.exists)
        claims.release(Dataset.objects.get(slug=dataset["slug"]).claim_id, note="")
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert "The server no longer holds the claim on dataset 'late:d'" in err, err
    assert "late.txt" not in crunch.stored(dataset), err
    assert (3, 1) not in statuses(dataset["slug"])  # no Upload Start was recorded


def test_max_datasets_counts_across_slots(served_crunch: Crunch) -> None:
    crunch = served_crunch
    project = crunch.project("Max", REPORT)
    for i in range(12):
        crunch.dataset(project["slug"], f"d{i:02}")
    result = crunch.run("loop", "--quiet", "--slots", "4", "--max-datasets", "5")
    assert result.returncode == 0, result.stderr
    assert "Processed 5 dataset(s): 5 completed, 0 failed" in result.stdout
    assert "(reached --max-datasets 5)" in result.stdout
    states = list(Dataset.objects.values_list("state", "attempts"))
    assert states.count(("completed", 1)) == 5
    assert states.count(("pending", 0)) == 7  # never claimed, not even ahead
    assert Status.objects.values("dataset").distinct().count() == 5


BAD = [
    (["--slots", "0"], {}, "argument --slots: '0' must be at least 1."),
    (["--slots", "x"], {}, "argument --slots: 'x' is not a whole number or 'auto'."),
    (["--slots", "999"], {}, "argument --slots: '999' is more than 256 slots."),
    (["--gpus-per-slot", "-1"], {}, "argument --gpus-per-slot: '-1' must not be negative."),
    (["--mem-per-slot", "lots"], {}, "argument --mem-per-slot: 'lots' is not a memory size: use e.g. 512m or 8g."),  # noqa: E501
    (
        ["--gpus-per-slot", "2"], {"CUDA_VISIBLE_DEVICES": "0"},
        "CommandError: --gpus-per-slot 2 with 1 slot(s) needs 2 GPU(s), but this process may "
        "use 1 (CUDA_VISIBLE_DEVICES=0): pass fewer --slots or --gpus-per-slot, or ask the "
        "scheduler for more GPUs.",
    ),
    (
        ["--slots", "2", "--gpus-per-slot", "1"], {},
        "CommandError: --gpus-per-slot 1 with 2 slot(s) needs 2 GPU(s), but this process may "
        "use 0 (no GPU variable set): pass fewer --slots or --gpus-per-slot, or ask the "
        "scheduler for more GPUs.",
    ),
    (
        ["--slots", "auto", "--cores-per-slot", "100000"], {},
        "CommandError: --slots auto: this node gives {cpus} CPU(s), fewer than "
        "--cores-per-slot 100000: pass a smaller --cores-per-slot.",
    ),
    (
        ["--cores", "2", "--cores-per-slot", "4"], {},
        "CommandError: --cores 2 and --cores-per-slot 4 disagree: pass one of them (each "
        "slot's workflow gets it).",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("options", "given", "line"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_slot_options_are_one_line(
    crunch: Crunch, options: list[str], given: dict[str, str], line: str
) -> None:
    import os

    project = crunch.project("Bad", "true\n")
    crunch.dataset(project["slug"], "one")
    result = crunch.run("loop", *options, env=gpu_env(crunch, **given))
    assert result.returncode == 2
    cpus = len(os.sched_getaffinity(0))
    assert error_line(result).endswith(line.format(cpus=cpus))
    assert list(Dataset.objects.values_list("state", "attempts")) == [("pending", 0)]
    assert not Status.objects.exists()
