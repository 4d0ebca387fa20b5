"""A real testproject server under gunicorn, that tests can stop and restart.

Used by the resilience tests, by the e2e tests that process many datasets (gunicorn serving
the test database, see ``test_database_env``) and by benchmarks/chaos.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def postgres_url() -> str | None:
    """The PostgreSQL server to use, from DATABASE_URL or CRUNCH_TEST_DATABASE_URL."""
    for name in ("CRUNCH_TEST_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return None


@contextmanager
def fresh_database(name: str, server_url: str | None = None) -> Iterator[str]:
    """Create database ``name`` (dropping an old one) beside ``server_url``; drop it after."""
    import psycopg

    admin_url = server_url or postgres_url() or DEFAULT_POSTGRES
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"

    def recreate(create: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')

    recreate(True)
    try:
        yield url
    finally:
        recreate(False)


def test_database_env() -> dict[str, str]:
    """The environment that points a testproject server at this test process's database.

    pytest-django's test database (one per xdist worker), which a transactional test commits
    to, so a gunicorn serving it and the test's ORM see the same rows.
    """
    from django.db import connection

    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"CRUNCH_SQLITE": str(database["NAME"])}
    user = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    address = f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}"
    return {"DATABASE_URL": f"postgres://{user}@{address}/{database['NAME']}"}


def manage(*args: str, env: dict[str, str]) -> str:
    """Run ``manage.py ARGS`` against the server's database; return its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


class GunicornServer:
    """gunicorn serving testproject with several workers; stop() and start() keep the port."""

    def __init__(self, *, port: int, env: dict[str, str], log: Path, workers: int = 4) -> None:
        self.port = port
        self.env = env
        self.log = log
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        command = [
            sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
            "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "5", "--timeout", "60",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/", timeout=2)
                return
            except requests.RequestException:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited; see {self.log}") from None
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
