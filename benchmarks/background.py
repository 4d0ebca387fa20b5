"""Measure how much the client's background hashing slows a CPU-bound workflow.

    .venv/bin/python -m benchmarks.background [--repeat 3]

A workflow of one busy process per core runs: alone (the baseline); while the client
hashes the workflow's files (crunchclient.worker.workflow.outputs, at nice 19),
started as the client starts it (its own process group in the client's session); and
the same, started in a session of its own. Linux's autogroup shares the CPU between
sessions, so in the last case the hashing competes with the workflow as an equal
despite its nice value.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import load_average

BUSY = "x = 0\nfor i in range(25_000_000):\n    x += i\n"


def workflow(spawn: dict[str, Any]) -> float:
    """Run one busy Python process per core, started with spawn; return the seconds."""
    cores = os.cpu_count() or 1
    script = " ".join([f"{sys.executable} -c '{BUSY}' &"] * cores) + " wait"
    started = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True, **spawn)
    return time.perf_counter() - started


def with_hashing(folder: Path, spawn: dict[str, Any]) -> float:
    """Run the workflow while the client hashes a file too large to finish meanwhile."""
    from crunchclient.worker.workflow.outputs import OutputHashes

    big = folder / "result.bin"
    big.unlink(missing_ok=True)
    with open(big, "wb") as out:
        out.truncate(64 * 1024**3)  # sparse: MD5, not the disk, sets the pace
    outputs = OutputHashes(folder, exclude=lambda rel: False, settle=0.05).start()
    time.sleep(0.5)  # settled, and its hashing under way
    try:
        return workflow(spawn)
    finally:
        outputs.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing, best kept")
    args = parser.parse_args()

    from crunchclient.worker.shutdown import OWN_GROUP

    own_session = {"start_new_session": True}
    print(
        f"{os.cpu_count()} cpus, autogroup {autogroup()}, best of {args.repeat}, "
        f"load average {load_average():.1f} (a shared machine slows the runs unevenly)\n"
    )
    with tempfile.TemporaryDirectory(prefix="crunch-bench-") as tmp:
        folder = Path(tmp)
        alone = min(workflow(OWN_GROUP) for _ in range(args.repeat))
        print(f"{'workflow alone':46} {alone:6.2f}s")
        for label, spawn, target in (
            ("+ client hashing, as the client starts it", OWN_GROUP, 1.25),
            ("+ client hashing, workflow in its own session", own_session, None),
        ):
            seconds = min(with_hashing(folder, spawn) for _ in range(args.repeat))
            ratio = seconds / alone
            verdict = (
                "" if target is None else f"<= {target}x {'ok' if ratio <= target else 'MISSED'}"
            )
            print(f"{label:46} {seconds:6.2f}s  {ratio:.2f}x  {verdict}".rstrip())


def autogroup() -> str:
    try:
        return (
            "on"
            if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
            else "off"
        )
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
