"""Time ``crunch export`` of a project's results, and watch the client's memory.

    .venv/bin/python -m benchmarks.export                       # SQLite, 100,000 x 10
    .venv/bin/python -m benchmarks.export --database postgres --datasets 10000

Fills a fresh database with one project of N datasets and 10 results each (bulk inserts),
serves it with gunicorn, then runs ``crunch export`` as a user does, once per format,
printing the wall time, the file's size and the client's peak RSS (sampled every 20 ms).
Flat memory: the peak is about the same at 10,000 and 100,000 datasets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.harness import (
    CRUNCH,
    CURRENT,
    ROOT,
    Server,
    clean_env,
    database,
    load_average,
    server_env,
)

TARGET_SECONDS = 5.0
BATCH = 5000


def fill(total: int) -> None:
    """In this process, against the database the environment names: the project 'survey'."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    import datetime

    from crunch.models import Dataset, Project, Result, ResultKey
    from crunch.services.results import bump

    project = Project.objects.create(name="Survey", slug="survey")
    kinds = {
        "words": ("int", "integer"), "score": ("float", "number"), "pvalue": ("float", "number"),
        "depth": ("float", "number"), "count": ("int", "integer"), "ok": ("bool", "flag"),
        "site": ("char", "text"), "day": ("date", "date"), "at": ("datetime", "moment"),
        "where": ("latlong", ""),
    }  # fmt: skip
    keys = {name: ResultKey.objects.create(project=project, name=name, kind=kind)
            for name, (kind, _) in kinds.items()}  # fmt: skip
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    for first in range(0, total, BATCH):
        made = Dataset.objects.bulk_create(
            Dataset(project=project, name=f"ds{i}", slug=f"survey:ds{i}", state="completed",
                    base_file_path=f"crunch/survey/ds{i}")
            for i in range(first, min(first + BATCH, total))
        )  # fmt: skip
        rows = []
        for dataset in made:
            i = int(dataset.name[2:])
            values = {
                "words": i * 7 % 10_000, "score": (i % 997) / 997, "pvalue": 1 / (i + 1),
                "depth": i * 0.25, "count": i, "ok": bool(i % 2), "site": f"site-{i % 40}",
                "day": start.date() + datetime.timedelta(days=i % 365),
                "at": start + datetime.timedelta(seconds=i),
            }  # fmt: skip
            for name, value in values.items():
                rows.append(Result(dataset=dataset, key=keys[name], **{kinds[name][1]: value}))
            rows.append(Result(dataset=dataset, key=keys["where"], lat=i % 90, lon=i % 180))
        Result.objects.bulk_create(rows)
    bump(project)


def run_export(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``crunch export ARGS``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(CRUNCH), "export", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    _, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"crunch export failed: {stderr.decode().strip()}")
    return seconds, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args(argv)
    if args.fill is not None:
        fill(args.fill)
        return 0
    with (
        tempfile.TemporaryDirectory() as folder,
        database(args.database, Path(folder), "export") as db,
    ):
        env = server_env(**db.settings)
        CURRENT.manage("migrate", "--no-input", env=env)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "benchmarks.export", "--fill", str(args.datasets)],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
        built = time.perf_counter() - started
        token = CURRENT.manage("crunch_token", "reader", "--role", "viewer", env=env)
        print(f"{args.database}: {args.datasets:,} datasets x 10 results, built in {built:.1f} s")
        worst = 0.0
        with Server(env=env, log=Path(folder) / "gunicorn.log", workers=2).start() as server:
            client = clean_env(CRUNCH_URL=server.url, CRUNCH_TOKEN=token)
            for kind in ("csv", "jsonl", "parquet"):
                dest = Path(folder) / f"survey.{kind}"
                args_ = ["--project", "survey", "--format", kind, "--dest", str(dest)]
                seconds, peak = run_export(args_, client)
                worst = max(worst, seconds)
                size = dest.stat().st_size / 2**20
                print(f"  --format {kind:<8} {seconds:6.2f} s  {size:7.1f} MiB  "
                      f"client peak RSS {peak / 2**20:6.1f} MiB")  # fmt: skip
        print(
            f"worst {worst:.2f} s (target < {TARGET_SECONDS:.0f} s); "
            f"load average {load_average():.1f}"
        )
        return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
