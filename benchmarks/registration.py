"""Registering datasets in bulk, and ``crunch status`` with them registered.

    .venv/bin/python -m benchmarks.registration [--sizes 10000 100000] [--workers 2]

For each database (SQLite, and PostgreSQL when CRUNCH_BENCH_POSTGRES or DATABASE_URL names
a server; the benchmark creates and drops its own database ``crunch_bench_<pid>`` there) a
real server runs under gunicorn; each size is a new project, registered with
``crunch import PROJECT --from-csv FILE`` (batches of 1,000 through the bulk endpoint,
with three typed attributes per dataset). Then ``crunch status --project`` is timed
against the largest project. Target: 10,000 datasets in under 10 s on SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.harness import (
    CRUNCH,
    CURRENT,
    Server,
    clean_env,
    configured_postgres,
    database,
    load_average,
)


def write_csv(path: Path, count: int) -> None:
    with path.open("w") as out:
        out.write("name,depth:float,count:int,dry:bool\n")
        for i in range(count):
            out.write(f"d{i},{i / 8},{i},{'true' if i % 2 else 'false'}\n")


def load() -> str:
    return f"[load {load_average():.1f}]"


def crunch(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(CRUNCH), *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"crunch {' '.join(args)} failed: {result.stderr.strip()}")
    return seconds, result.stdout.strip()


def measure(label: str, env: dict[str, str], sizes: list[int], workers: int) -> None:
    """Migrate, start gunicorn, register each size, time status; stop the server."""
    CURRENT.manage("migrate", "--verbosity", "0", env=env)
    token = CURRENT.manage("crunch_token", "bench", "--role", "maintainer", env=env).split()[-1]
    with (
        tempfile.TemporaryDirectory() as logs,
        Server(env=env, log=Path(logs) / "gunicorn.log", workers=workers, timeout=600) as server,
    ):
        server.start(timeout=60)
        client = clean_env(CRUNCH_URL=server.url, CRUNCH_TOKEN=token)
        with tempfile.TemporaryDirectory() as folder:
            for size in sizes:
                slug = crunch(client, "add-project", f"Bench {size}")[1]
                rows = Path(folder) / f"{size}.csv"
                write_csv(rows, size)
                seconds, said = crunch(client, "import", slug, "--from-csv", str(rows))
                again, said_again = crunch(client, "import", slug, "--from-csv", str(rows))
                print(
                    f"{label:<11} register {size:>7,} datasets: {seconds:6.1f} s "
                    f"({size / seconds:,.0f}/s; {said}); again {again:5.1f} s ({said_again}) "
                    f"{load()}",
                    flush=True,
                )
            timings = [crunch(client, "status", "--project", slug)[0] for _ in range(5)]
            print(
                f"{label:<11} crunch status at {sizes[-1]:,} datasets: median "
                f"{statistics.median(timings):.2f} s, best {min(timings):.2f} s "
                f"(a whole client process each) {load()}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if configured_postgres() else ["sqlite"]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        for kind in kinds:
            db = stack.enter_context(database(kind, Path(folder), "crunch_bench"))
            env = clean_env(**db.settings, CRUNCH_MEDIA_ROOT=folder)
            measure("postgresql" if kind == "postgres" else kind, env, args.sizes, args.workers)
    if len(kinds) == 1:
        print("postgresql  skipped: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main())
