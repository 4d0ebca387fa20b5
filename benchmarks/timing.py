"""Timing helpers of benchmarks/transfer.py and benchmarks/transfer_s3.py: best-of rounds
that alternate ours and the baseline, and the table they print, with the machine's load."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import load_average

Step = Callable[[], object]
"""A timed run, or what prepares it; what it returns is ignored."""


def evict(tree: Path, cold: bool) -> None:
    """With --cold, drop tree's files from the page cache: read from disk, as a large
    dataset is, instead of from memory."""
    if not cold:
        return
    for path in tree.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def clear(path: Path) -> None:
    """Remove path and make sure its parent exists, ready for a copy."""
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)


def emptied(path: Path, source: Path, cold: bool) -> Step:
    """What prepares a copy of ``source`` to ``path``: ``path`` cleared, ``source`` evicted."""

    def prepare() -> None:
        clear(path)
        evict(source, cold)

    return prepare


def load() -> str:
    """The machine's 1-minute load average, printed so readers can judge the noise."""
    return f"{load_average():.1f}"


def timed(run: Step, before: Step) -> float:
    before()
    os.sync()  # earlier runs' dirty pages must not be flushed on our clock
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def best_pair(
    ours: Step,
    base: Step,
    before_ours: Step,
    before_base: Step,
    repeat: int,
) -> tuple[float, float]:
    t_base, t_ours = best_of([(base, before_base), (ours, before_ours)], repeat)
    return t_ours, t_base


def best_of(runs: list[tuple[Step, Step]], repeat: int) -> list[float]:
    """The best time of each (run, before) over repeat rounds that take them in turn."""
    best = [float("inf")] * len(runs)
    # One untimed round first: this VM pays for the first touch of fresh memory, which
    # would otherwise land on whichever copy runs first.
    for run, before in runs:
        timed(run, before)
    for _ in range(repeat):
        for i, (run, before) in enumerate(runs):
            best[i] = min(best[i], timed(run, before))
    return best


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self, case: str, what: str, ours: float, base: float, baseline: str, target: float
    ) -> None:
        ratio = ours / base if base else float("inf")
        self.rows.append(
            (
                case,
                what,
                f"{ours:.3f}s",
                f"{base:.3f}s",
                baseline,
                f"{ratio:.2f}x",
                f"<= {target:g}x",
                "ok" if ratio <= target else "MISSED",
                load(),
            )
        )
        self.print_row(self.rows[-1])

    def add_raw(self, *row: str) -> None:
        row = (*row, load())
        self.rows.append(row)
        self.print_row(row)

    header = (
        "case",
        "operation",
        "crunch",
        "baseline",
        "baseline is",
        "ratio",
        "target",
        "",
        "load",
    )
    widths = (15, 33, 9, 9, 22, 7, 8, 6, 5)

    def print_row(self, row: tuple[str, ...]) -> None:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, self.widths, strict=True)).rstrip(),
            flush=True,
        )

    def start(self) -> None:
        self.print_row(self.header)
        self.print_row(tuple("-" * w for w in self.widths))
