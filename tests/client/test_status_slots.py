"""Issue 27: ``crunch status`` shows each live loop's slots, busy and free, from the
overview's "slots" list; an older server's overview, without it, reads as before."""

from __future__ import annotations

from typing import Any

from crunchclient.terminal.watch import CLIENTS_SHOWN, status_lines

OVERVIEW: dict[str, Any] = {
    "project": "p", "total": 40, "pending": 20, "running": 12, "completed": 8, "failed": 0,
    "throughput_per_hour": 480.0, "eta_seconds": 240.0, "live_clients": 12,
    "clients_by_job": {"4242": 12}, "failures": [],
}  # fmt: skip


def test_an_older_servers_overview_without_slots_reads_as_before() -> None:
    assert status_lines(OVERVIEW) == [
        "Project 'p': 40 dataset(s): 20 pending, 12 running, 8 completed, 0 failed.",
        "Throughput 480.0 datasets/h over the last hour; time to finish 4m 00s.",
        "Live clients: 12 (job 4242: 12).",
    ]
    assert status_lines(OVERVIEW | {"slots": []}) == status_lines(OVERVIEW)


def test_each_loops_slots_busy_and_free_with_its_node_job_and_array_task() -> None:
    slots = [
        {"holder": "h2", "hostname": "node-2", "slurm_job_id": "4242",
         "slurm_array_task_id": "2", "slots": 8, "busy": 5},
        {"holder": "h1", "hostname": "node-1", "slurm_job_id": "4242",
         "slurm_array_task_id": "1", "slots": 8, "busy": 7},
        {"holder": "laptop-31337", "hostname": "", "slurm_job_id": "", "slots": 4, "busy": 0},
    ]  # fmt: skip
    assert status_lines(OVERVIEW | {"slots": slots})[3:] == [
        "Slots: 12 of 20 busy in 3 loop(s):",
        "  laptop-31337: 0 busy, 4 free of 4",
        "  node-1, job 4242_1: 7 busy, 1 free of 8",
        "  node-2, job 4242_2: 5 busy, 3 free of 8",
    ]


def test_many_loops_are_counted_beyond_the_first_ones() -> None:
    slots = [
        {"holder": f"h{i}", "hostname": f"node-{i:03d}", "slurm_job_id": "7", "slots": 2,
         "busy": 2}
        for i in range(CLIENTS_SHOWN + 5)
    ]  # fmt: skip
    lines = status_lines(OVERVIEW | {"slots": slots})[3:]
    assert lines[0] == f"Slots: {2 * len(slots)} of {2 * len(slots)} busy in {len(slots)} loop(s):"
    assert len(lines) == 1 + CLIENTS_SHOWN + 1
    assert lines[-1] == "  ... and 5 more loop(s)"
