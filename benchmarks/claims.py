"""Claim and stats latency with 100,000 datasets, on SQLite and (when configured) PostgreSQL.

    .venv/bin/python -m benchmarks.claims [--datasets 100000] [--claims 300]

PostgreSQL is measured when CRUNCH_BENCH_POSTGRES or DATABASE_URL names a server; the
benchmark creates and drops its own database ``crunch_bench_<pid>`` there. The datasets are
registered as the bulk endpoint registers them, then a quarter each marked completed and
failed.
Also prints the SQL queries per claim at 1,000 and at the full size, which must be equal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.harness import ROOT, configured_postgres, database


def measure(datasets: int, claim_count: int) -> None:
    """Run inside a configured Django: fill the database, then time claims and stats."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import F
    from django.test.utils import CaptureQueriesContext

    from crunch.models import Dataset, Project
    from crunch.services.claims import claim_next
    from crunch.services.registration import NewDataset, register_datasets
    from crunch.services.stats import project_stats

    call_command("migrate", verbosity=0)
    small = Project.objects.create(name="Small")
    big = Project.objects.create(name="Big")

    def fill(project: Project, count: int) -> None:
        """``count`` datasets: pending, pending, completed, failed, in turn."""
        register_datasets(project, (NewDataset(name=f"d{i}") for i in range(count)))
        cycle = Dataset.objects.filter(project=project).annotate(turn=F("id") % 4)
        cycle.filter(turn=2).update(state="completed")
        cycle.filter(turn=3).update(state="failed")

    def queries_per_claim(project: Project) -> int:
        with CaptureQueriesContext(connection) as context:
            claim_next(holder="bench", project=project)
        return len(context)

    fill(small, 1000)
    small_queries = queries_per_claim(small)
    started = time.perf_counter()
    fill(big, datasets)
    fill_seconds = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    big_queries = queries_per_claim(big)

    claim_ms = []
    for n in range(claim_count):
        started = time.perf_counter()
        claim_next(holder=f"bench-{n}", project=big if n % 2 else None)
        claim_ms.append((time.perf_counter() - started) * 1000)
    stats_ms = []
    for _ in range(50):
        started = time.perf_counter()
        project_stats(big)
        stats_ms.append((time.perf_counter() - started) * 1000)
    p95 = sorted(claim_ms)[int(len(claim_ms) * 0.95)]
    print(
        f"{connection.vendor:<11} datasets={Dataset.objects.count():>7}  "
        f"claim median={statistics.median(claim_ms):6.2f} ms p95={p95:6.2f} ms  "
        f"stats median={statistics.median(stats_ms):6.2f} ms  "
        f"queries/claim at 1k={small_queries} at {datasets // 1000}k={big_queries}  "
        f"(registered in {fill_seconds:.1f} s)",
        flush=True,
    )


def run_child(env: dict[str, str], args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        "-m",
        "benchmarks.claims",
        "--child",
        "--datasets",
        str(args.datasets),
        "--claims",
        str(args.claims),
    ]
    return subprocess.call(
        command,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings", **env},
        cwd=ROOT,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.datasets, args.claims)
        return 0
    print("targets: claim median < 10 ms, stats median < 50 ms, queries/claim independent of size")
    failures = 0
    kinds = ["sqlite", "postgres"] if configured_postgres() else ["sqlite"]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        for kind in kinds:
            db = stack.enter_context(database(kind, Path(folder), "crunch_bench"))
            failures += run_child({"DATABASE_URL": "", **db.settings}, args)
    if len(kinds) == 1:
        print("postgresql  skipped: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
