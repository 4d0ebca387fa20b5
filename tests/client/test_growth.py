"""``crunch submit --mem-retry``/``--time-retry`` (launchers/growth.py): the levels that serve
the datasets needing more, the scripts a dry run shows, and one-line errors."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from crunch.models import Dataset
from crunchclient.launchers.growth import Growth, Level, factor, levels_for
from tests.clientkit import CRUNCH, Crunch, clean_env, error_line

GiB = 1024**3


def test_factors_are_read_and_bad_ones_refused() -> None:
    assert [factor(text) for text in ("x2", "2", "X1.5", " x3 ")] == [2.0, 2.0, 1.5, 3.0]
    for text in ("x0", "x1", "x-1", "lots", "x", "xinf", "x2x"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a factor above 1"):
            factor(text)


def test_a_need_is_served_by_the_first_level_that_is_enough_up_to_the_ceiling() -> None:
    memory = Growth(8 * GiB, 2.0, 64 * GiB)
    assert memory.enough(8 * GiB + 1) == 16 * GiB
    assert memory.enough(16 * GiB + 1) == 32 * GiB
    assert memory.enough(40 * GiB) == 64 * GiB  # the ceiling, not 64 by luck: 8*2^3
    assert Growth(8 * GiB, 2.0, 48 * GiB).enough(40 * GiB) == 48 * GiB
    assert memory.enough(64 * GiB + 1) is None
    assert Growth(100, 2.0).enough(10**6) == 100 * 2**14  # no ceiling


def test_the_overviews_needs_are_grouped_by_level() -> None:
    needs = [
        {"reason": "out-of-memory", "memory": 8 * GiB + 1, "seconds": None, "count": 3},
        {"reason": "out-of-memory", "memory": 12 * GiB, "seconds": None, "count": 2},
        {"reason": "out-of-memory", "memory": 100 * GiB, "seconds": None, "count": 1},
        {"reason": "time-limit", "memory": None, "seconds": 1801, "count": 4},
    ]
    grown = levels_for(needs, memory=Growth(8 * GiB, 2.0, 64 * GiB), time=None)
    assert grown.levels == {Level(memory=16 * GiB): 5}
    assert (grown.unserved, grown.total) == (5, 10)  # above the ceiling; no --time-retry
    both = levels_for(needs, memory=None, time=Growth(1800, 2.0))
    assert both.levels == {Level(seconds=3600): 4}
    assert Level(memory=16 * GiB, seconds=3600).name() == "mem16G-time3600s"


BASE = ["submit", "--project", "hungry", "--time", "1h", "--dry-run"]


def dry_run(crunch: Crunch, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRUNCH, *BASE, "--url", crunch.url, "--token", crunch.token, *args],
        env=clean_env(HOME=str(tmp_path)), cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_shows_the_array_for_datasets_that_ran_out_of_memory(
    crunch: Crunch, tmp_path: Path
) -> None:
    crunch.project("Hungry", "true\n")
    for name in ("a", "b", "c"):
        crunch.dataset("hungry", name)
    # Two ran out of memory in 8 GiB tasks (what the server records from their Fails).
    Dataset.objects.filter(name__in=["a", "b"]).update(
        last_reason="out-of-memory", needs_memory=8 * GiB + 1
    )

    result = dry_run(crunch, tmp_path, "--mem", "8G", "--mem-retry", "x2", "--mem-ceiling", "64G")

    assert result.returncode == 0, result.stderr
    scripts = result.stdout.split("#!/bin/bash")[1:]
    assert len(scripts) == 2
    assert "#SBATCH --mem=8G" in scripts[0] and " --quiet --memory 8G\n" in scripts[0]
    assert "# 2 dataset(s) need more: --mem 16G:" in result.stdout
    assert "#SBATCH --mem=16G" in scripts[1] and "--job-name=crunch-hungry-mem16G" in scripts[1]
    assert scripts[1].rstrip().endswith("--memory 16G")
    assert not list(tmp_path.rglob("*.env"))  # a dry run writes nothing


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mem-retry", "x0"], "argument --mem-retry: 'x0' is not a factor above 1"),
        (["--mem-retry", "x-1"], "argument --mem-retry: 'x-1' is not a factor above 1"),
        (["--mem-retry", "lots"], "argument --mem-retry: 'lots' is not a factor above 1"),
        (["--mem-retry", "x2"], "CommandError: --mem-retry needs --mem, the first tasks'"),
        (["--mem", "lots", "--mem-retry", "x2"], "CommandError: 'lots' is not a memory size"),
        (["--mem", "8G", "--mem-retry", "x2", "--mem-ceiling", "8G"],
         "CommandError: --mem-ceiling 8G is not more than --mem 8G"),
        (["--mem-ceiling", "8G"], "CommandError: --mem-ceiling needs --mem-retry"),
        (["--mem", "8G", "--mem-retry", "x2", "--slots", "2"],
         "CommandError: --mem-retry gives single-dataset tasks more memory"),
        (["--time-retry", "x2"], "CommandError: --time-retry needs --timeout"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors(
    crunch: Crunch, tmp_path: Path, args: list[str], message: str
) -> None:
    result = dry_run(crunch, tmp_path, *args)
    assert result.returncode != 0
    assert message in error_line(result)
