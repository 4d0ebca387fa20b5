"""Registering datasets in bulk, and ``crunch status`` with them registered.

    .venv/bin/python benchmarks/registration.py [--sizes 10000 100000] [--workers 2]

For each database (SQLite, and PostgreSQL when DATABASE_URL or CRUNCH_BENCH_POSTGRES names
a server; the benchmark creates and drops its own database ``crunch_bench`` there) a real
server runs under gunicorn; each size is a new project, registered with
``crunch import PROJECT --from-csv FILE`` (batches of 1,000 through the bulk endpoint,
with three typed attributes per dataset). Then ``crunch status --project`` is timed
against the largest project. Target: 10,000 datasets in under 10 s on SQLite.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def write_csv(path: Path, count: int) -> None:
    with path.open("w") as out:
        out.write("name,depth:float,count:int,dry:bool\n")
        for i in range(count):
            out.write(f"d{i},{i / 8},{i},{'true' if i % 2 else 'false'}\n")


def load() -> str:
    """The machine's load beside each figure: it is shared, and figures move with it."""
    return f"[load {os.getloadavg()[0]:.1f}]"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def crunch(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "crunch"), *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"crunch {' '.join(args)} failed: {result.stderr.strip()}")
    return seconds, result.stdout.strip()


def measure(label: str, env: dict[str, str], sizes: list[int], workers: int) -> None:
    """Migrate, start gunicorn, register each size, time status; stop the server."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, check=True, cwd=ROOT)
    token = subprocess.run(
        [*manage, "crunch_token", "bench", "--role", "maintainer"],
        env=env, check=True, cwd=ROOT, capture_output=True, text=True,
    ).stdout.split()[-1]  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "testproject.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "600", "--log-level", "warning"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DJANGO_"))},
        "CRUNCH_URL": url, "CRUNCH_TOKEN": token,
    }  # fmt: skip
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/api/", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
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
    finally:
        server.terminate()
        server.wait(timeout=30)


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings"}
    with tempfile.TemporaryDirectory() as folder:
        sqlite = {
            **base, "DATABASE_URL": "", "CRUNCH_SQLITE": str(Path(folder) / "bench.sqlite3"),
            "CRUNCH_MEDIA_ROOT": folder,
        }  # fmt: skip
        measure("sqlite", sqlite, args.sizes, args.workers)
        url = os.environ.get("CRUNCH_BENCH_POSTGRES") or os.environ.get("DATABASE_URL")
        if url:
            bench = with_bench_database(url, create=True)
            try:
                postgres = {**base, "DATABASE_URL": bench, "CRUNCH_MEDIA_ROOT": folder}
                measure("postgresql", postgres, args.sizes, args.workers)
            finally:
                with_bench_database(url, create=False)
        else:
            print(
                "postgresql  skipped: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
