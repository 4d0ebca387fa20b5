"""What every benchmark shares: free ports, clean environments, databases, gunicorn, and a
checkout of an older commit to compare with.

The benchmarks are modules of the package ``benchmarks``: run them from the repository's
root, ``.venv/bin/python -m benchmarks.capacity --help``. Nothing here imports ``tests/``.

An older commit lives in a git worktree (made here when missing, never committed) and runs
with this checkout's .venv, its own folder as cwd and on PYTHONPATH, so its server, its
manage.py and its ``crunch`` client are its own. A commit from before 0.2 needs
Python-Markdown, which this checkout does not: ``.venv/bin/pip install -e '.[bench]'``.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CRUNCH = BIN / "crunch"
"""The client's console script, as a user runs it."""
BASE_COMMIT = "db247aa"
"""The main issue 24 started from: what capacity, overhead and suite_time compare with."""
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> float:
    """The machine's 1-minute load: it is shared, and the figures move with it."""
    return os.getloadavg()[0]


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without CRUNCH_*, DJANGO_* and DATABASE_URL, plus ``extra``; and
    without PYTHONDONTWRITEBYTECODE, so each checkout's code runs from cached bytecode as an
    installed package does (compiling every module at each client's start-up cost 70 ms)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {**env, **extra}


def server_env(**extra: str) -> dict[str, str]:
    """A production-like server's environment: no DEBUG, connections kept across requests
    (as testproject/deploy.py does; mains before 0.2 read this for PostgreSQL only)."""
    return clean_env(DJANGO_DEBUG="0", CRUNCH_CONN_MAX_AGE="600", **extra)


def write_storage_settings(path: Path, media: Path) -> Path:
    """The client's view of the server's storage: FileSystemStorage at ``media``."""
    path.write_text(
        '[STORAGES.default]\nBACKEND = "django.core.files.storage.FileSystemStorage"\n'
        f'[STORAGES.default.OPTIONS]\nlocation = "{media}"\n'
    )
    return path


# ---------------------------------------------------------------------------- databases


def configured_postgres() -> str | None:
    """The PostgreSQL server the caller named: CRUNCH_BENCH_POSTGRES, else the tests' own
    CRUNCH_TEST_DATABASE_URL (tests/e2e/test_resilience.py runs benchmarks.chaos), else
    DATABASE_URL."""
    for name in ("CRUNCH_BENCH_POSTGRES", "CRUNCH_TEST_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return None


@dataclass(frozen=True)
class Database:
    """A benchmark's own database, and the environment that points a server at it."""

    kind: str
    """'sqlite' or 'postgres'."""
    settings: dict[str, str]
    """CRUNCH_SQLITE=<file>, or DATABASE_URL=<url>: what testproject/settings.py reads."""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (with %s placeholders)."""
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.settings["DATABASE_URL"]) as conn:
                return list(conn.execute(sql, params).fetchall())
        with sqlite3.connect(self.settings["CRUNCH_SQLITE"]) as conn:
            return list(conn.execute(sql.replace("%s", "?"), params).fetchall())

    def cpu_seconds(self) -> float:
        """User plus system CPU time so far of the live PostgreSQL backends serving this
        database (their process titles name it); 0 for SQLite, which runs in the server's
        own processes. A backend that exited took its time with it."""
        if self.kind != "postgres":
            return 0.0
        name = f" {self.settings['DATABASE_URL'].rsplit('/', 1)[1]} "
        total = 0.0
        for process in psutil.process_iter(["cmdline"]):
            title = " ".join(process.info["cmdline"] or [])
            if not (title.startswith("postgres:") and name in title):
                continue
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total


@contextmanager
def postgres_database(name: str, server: str | None = None) -> Iterator[str]:
    """Create ``<name>_<pid>`` beside ``server`` (default: configured_postgres(), else the
    local one) and yield its URL; drop it after. The pid keeps runs side by side apart."""
    import psycopg

    admin = server or configured_postgres() or DEFAULT_POSTGRES
    name = f"{name}_{os.getpid()}"

    def recreate(create: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                conn.execute(f'CREATE DATABASE "{name}"')

    recreate(True)
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        recreate(False)


@contextmanager
def database(kind: str, folder: Path, name: str) -> Iterator[Database]:
    """A fresh, empty database: a new SQLite file in ``folder`` or a new PostgreSQL one."""
    if kind == "sqlite":
        yield Database(kind, {"CRUNCH_SQLITE": str(folder / f"{name}.sqlite3")})
    elif kind == "postgres":
        with postgres_database(name) as url:
            yield Database(kind, {"DATABASE_URL": url})
    else:
        raise SystemExit(f"Unknown database {kind!r}; use sqlite or postgres.")


# ---------------------------------------------------------------------------- checkouts


@dataclass(frozen=True)
class Version:
    """One checkout of crunch: its folder, and whether it predates roles and bulk registration."""

    name: str
    root: Path
    legacy: bool = False

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this checkout's code first on the path."""
        env = dict(base)
        if self.root != ROOT:
            env["PYTHONPATH"] = str(self.root)
        return env

    def manage(self, *args: str, env: Mapping[str, str]) -> str:
        """Run this checkout's ``manage.py ARGS``; return its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], check=False, cwd=self.root, env=self.env(env),
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode:
            raise RuntimeError(f"{self.name}: manage.py {args[0]} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def tokens(self, env: Mapping[str, str], name: str) -> tuple[str, str]:
        """(maintainer token, worker token); the older code has one kind of client token."""
        if self.legacy:
            token = self.manage("crunch_token", name, env=env)
            return token, token
        maintainer = self.manage(
            "crunch_token", f"{name}-maintainer", "--role", "maintainer", env=env
        )
        worker = self.manage("crunch_token", f"{name}-worker", "--role", "worker", env=env)
        return maintainer, worker


CURRENT = Version("current", ROOT)


def default_tree(commit: str) -> Path:
    return Path(tempfile.gettempdir()) / f"crunch-base-{commit}"


def base_version(commit: str = BASE_COMMIT, tree: Path | None = None) -> Version:
    """The worktree of ``commit`` at ``tree`` (default /tmp/crunch-base-<commit>), added if
    missing; it lives outside the repository and is never committed to."""
    tree = tree or default_tree(commit)
    if not (tree / "manage.py").exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    head = git("rev-parse", "HEAD", cwd=tree)
    if head != git("rev-parse", commit, cwd=ROOT):
        raise SystemExit(f"{tree} is at {head[:7]}, not {commit!r}; remove it or pass --base-tree.")
    # A main from before roles (crunch/access.py) has one kind of token and no bulk endpoint.
    return Version(commit, tree, legacy=not (tree / "crunch" / "access.py").exists())


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


# ---------------------------------------------------------------------------- servers


class Server:
    """gunicorn serving one checkout's testproject. ``stop()`` then ``start()`` keeps the
    port (a restart); ``cpu_seconds()`` is the CPU time its processes used so far."""

    def __init__(
        self, version: Version = CURRENT, *, env: Mapping[str, str], log: Path,
        port: int | None = None, workers: int = 4, timeout: int = 60,
        access_log: Path | None = None,
    ) -> None:  # fmt: skip
        self.version, self.env, self.log = version, dict(env), log
        self.port = port or free_port()
        self.workers, self.timeout, self.access_log = workers, timeout, access_log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
            "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "5", "--timeout", str(self.timeout),
        ]  # fmt: skip
        if self.access_log:
            # method, path, status, microseconds: enough to count and time the calls
            command += ["--access-logfile", str(self.access_log),
                        "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"]  # fmt: skip
        return command

    def start(self, timeout: float = 30) -> Server:
        """Start gunicorn and wait until it answers ``api/``."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.version.root, env=self.version.env(self.env),
                stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/", timeout=2)
                return self
            except requests.RequestException:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited; see {self.log}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer on {self.url} within {timeout} s")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the master and its live workers so far."""
        if self.process is None:
            return 0.0
        master = psutil.Process(self.process.pid)
        total = 0.0
        for process in [master, *master.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def session(token: str) -> requests.Session:
    """A requests session that sends ``token`` as the API asks."""
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    return api


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in a process of its own (not sharing our GIL); yield its endpoint."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
