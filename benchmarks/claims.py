"""Claim and stats latency with 100,000 datasets, on SQLite and (when configured) PostgreSQL.

    .venv/bin/python benchmarks/claims.py [--datasets 100000] [--claims 300]

PostgreSQL is measured when DATABASE_URL (or CRUNCH_BENCH_POSTGRES) names a server; the
benchmark creates and drops its own database ``crunch_bench`` there.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(datasets: int, claim_count: int) -> None:
    """Run inside a configured Django: fill the database, then time claims and stats."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from crunch.models import Dataset, Project
    from crunch.services.claims import claim_next
    from crunch.services.stats import project_stats
    from tests.factories import bulk_datasets

    call_command("migrate", verbosity=0)
    small = Project.objects.create(name="Small")
    big = Project.objects.create(name="Big")

    def fill(project: Project, count: int) -> None:
        bulk_datasets(
            project, count, prefix="d", states=("pending", "pending", "completed", "failed")
        )

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
        f"(bulk insert {fill_seconds:.1f} s)",
        flush=True,
    )


def run_child(env: dict[str, str], args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        __file__,
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


def postgres_url() -> str | None:
    return os.environ.get("CRUNCH_BENCH_POSTGRES") or os.environ.get("DATABASE_URL")


def with_bench_database(url: str, create: bool) -> str:
    """Create (or drop) the benchmark's own database beside the one ``url`` names."""
    import psycopg

    base = url.rsplit("/", 1)[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS crunch_bench")
        if create:
            conn.execute("CREATE DATABASE crunch_bench")
    return f"{base}/crunch_bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        measure(args.datasets, args.claims)
        return 0
    print("targets: claim median < 10 ms, stats median < 50 ms, queries/claim independent of size")
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        env = {"CRUNCH_SQLITE": str(Path(folder) / "bench.sqlite3"), "DATABASE_URL": ""}
        failures += run_child(env, args)
    if url := postgres_url():
        bench = with_bench_database(url, create=True)
        try:
            failures += run_child({"DATABASE_URL": bench}, args)
        finally:
            with_bench_database(url, create=False)
    else:
        print("postgresql  skipped: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
