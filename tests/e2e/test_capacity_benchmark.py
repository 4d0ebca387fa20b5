"""benchmarks/capacity.py --slots: simulated loops with slots on the batched protocol against
a real gunicorn, small enough for the suite. Its check (every dataset completed exactly once,
six statuses in order, no status or renewal refused) is what the figures stand on."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.clientkit import ROOT


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_batched_loops_complete_every_dataset_once_in_few_calls() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.capacity", "--databases", "sqlite", "--clients", "3",
         "--slots", "4", "--base", "", "--datasets", "60", "--heartbeat", "0.02", "--no-probe"],
        cwd=ROOT, capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "N=3x4" in line)
    assert "all completed once" in line
    calls = float(re.search(r"([\d.]+) calls/dataset", line)[1])  # type: ignore[index]
    # 60 datasets: 3 first claims, ~15 batches of 4, the renewals every 0.02 s between them
    assert calls < 1.0, line
