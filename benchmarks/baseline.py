"""Run a benchmark against this checkout and against an older commit of it, side by side.

benchmarks/capacity.py and benchmarks/overhead.py compare the current code with the main
an issue started from. The older code lives in a git worktree (made here when missing,
never committed) and runs with this checkout's .venv, its own folder as cwd and on
PYTHONPATH, so its server, its manage.py and its ``crunch`` client are its own. It needs
Python-Markdown, which this checkout does not: ``.venv/bin/pip install -e '.[bench]'``.

The two differ in how tokens are made (0.2's ``crunch_token --role``, the older
'crunch clients' group) and how datasets are registered (the bulk endpoint, or the ORM
through ``manage.py shell`` where there is none); the helpers here hide that.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import BIN, fresh_database, postgres_url  # noqa: E402

BASE_COMMIT = "371f601"
BASE_TREE = Path("/tmp/crunch-base")
__all__ = [
    "BASE_COMMIT", "BASE_TREE", "BIN", "CURRENT", "SIX", "Server", "Version", "base_version",
    "completion", "create_project", "database", "register_datasets", "server_env", "status_times",
]  # fmt: skip
SIX = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
"""Setup, Workflow, Upload; each Start then Success: a clean run's statuses, in order."""


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
            [sys.executable, "manage.py", *args], cwd=self.root, env=self.env(env),
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


CURRENT = Version("main", ROOT)


def base_version(commit: str = BASE_COMMIT, tree: Path = BASE_TREE) -> Version:
    """The worktree of ``commit`` at ``tree``, added if missing (it lives outside the repo)."""
    if not (tree / "manage.py").exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tree, check=True, capture_output=True, text=True
    ).stdout.strip()
    wanted = subprocess.run(
        ["git", "rev-parse", commit], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    if head != wanted:
        raise SystemExit(f"{tree} is at {head[:7]}, not {commit!r}; remove it or pass --base-tree.")
    # A main from before roles (crunch/access.py) has one kind of token and no bulk endpoint.
    return Version(commit, tree, legacy=not (tree / "crunch" / "access.py").exists())


def server_env(**extra: str) -> dict[str, str]:
    """The server's environment: ours without CRUNCH_*/DJANGO_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    # Connections kept across requests, as testproject/deploy.py does (the older main
    # reads this for PostgreSQL only).
    env.update(DJANGO_DEBUG="0", CRUNCH_CONN_MAX_AGE="600", **extra)
    return env


@contextmanager
def database(kind: str, folder: Path, name: str) -> Iterator[dict[str, str]]:
    """Settings of a fresh, empty database: a new SQLite file or a new PostgreSQL database."""
    if kind == "sqlite":
        yield {"CRUNCH_SQLITE": str(folder / f"{name}.sqlite3")}
    elif kind == "postgres":
        with fresh_database(f"{name}_{os.getpid()}", postgres_url()) as url:
            yield {"DATABASE_URL": url}
    else:
        raise SystemExit(f"Unknown database {kind!r}; use sqlite or postgres.")


class Server:
    """gunicorn serving one checkout's testproject; knows the CPU time its processes used."""

    def __init__(
        self, version: Version, *, env: Mapping[str, str], port: int, log: Path,
        workers: int = 4, access_log: Path | None = None,
    ) -> None:  # fmt: skip
        self.version, self.env, self.port, self.log = version, env, port, log
        self.workers, self.access_log = workers, access_log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        command = [
            str(BIN / "gunicorn"), "testproject.wsgi:application",
            "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
            "--graceful-timeout", "5", "--timeout", "60",
        ]  # fmt: skip
        if self.access_log:
            # method, path, status, microseconds: enough to count and time the calls
            command += ["--access-logfile", str(self.access_log),
                        "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.version.root, env=self.version.env(self.env),
                stdout=log, stderr=log,
            )  # fmt: skip
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

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the master and its live workers so far."""
        assert self.process is not None
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


def api_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def create_project(server: Server, token: str, name: str, workflow: str) -> str:
    """Create a project whose datasets may be empty; return its slug."""
    response = api_session(token).post(
        f"{server.url}/api/projects/",
        json={"name": name, "workflow": workflow, "allow_empty": True, "retry_delay": 0},
        timeout=30,
    )
    if response.status_code >= 400:
        raise RuntimeError(f"creating project {name!r} failed: {response.text[:300]}")
    return str(response.json()["slug"])


LEGACY_REGISTER = """
from crunch.models import Dataset, Project
project = Project.objects.get(slug={slug!r})
for i in range({count}):
    Dataset.objects.create(project=project, name=f"d{{i:05}}")
"""


def register_datasets(server: Server, token: str, slug: str, count: int) -> None:
    """Add ``count`` empty datasets to project ``slug``: in bulk, or through the older ORM."""
    if server.version.legacy:
        code = LEGACY_REGISTER.format(slug=slug, count=count)
        server.version.manage("shell", "-c", code, env=server.env)
        return
    session = api_session(token)
    for start in range(0, count, 5000):
        batch = [{"name": f"d{i:05}"} for i in range(start, min(count, start + 5000))]
        response = session.post(
            f"{server.url}/api/projects/{slug}/datasets/", json=batch, timeout=120
        )
        if response.status_code >= 400:
            raise RuntimeError(f"registering datasets failed: {response.text[:300]}")


def query(settings: Mapping[str, str], sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (with %s placeholders) from the database ``settings`` name."""
    if "DATABASE_URL" in settings:
        import psycopg

        with psycopg.connect(settings["DATABASE_URL"]) as conn:
            return list(conn.execute(sql, params).fetchall())
    with sqlite3.connect(settings["CRUNCH_SQLITE"]) as conn:
        return list(conn.execute(sql.replace("%s", "?"), params).fetchall())


def completion(settings: Mapping[str, str], slug: str) -> dict[str, int]:
    """How many datasets of ``slug`` completed exactly once (six statuses, in order)."""
    rows = query(
        settings,
        "SELECT d.id, d.state, s.stage, s.state FROM crunch_dataset d "
        "JOIN crunch_project p ON p.id = d.project_id "
        "LEFT JOIN crunch_status s ON s.dataset_id = d.id "
        "WHERE p.slug = %s ORDER BY d.id, s.created, s.id",
        (slug,),
    )
    runs: dict[int, tuple[str, list[tuple[int, int]]]] = {}
    for dataset, state, stage, status_state in rows:
        _, seen = runs.setdefault(dataset, (state, []))
        if stage is not None:
            seen.append((stage, status_state))
    good = sum(1 for state, seen in runs.values() if state == "completed" and seen == SIX)
    return {"datasets": len(runs), "completed once": good, "wrong": len(runs) - good}


def status_times(settings: Mapping[str, str], slug: str) -> tuple[float, float]:
    """Seconds since the epoch of the project's first Setup Start and last Upload Success."""
    (first, last), *_ = query(
        settings,
        "SELECT MIN(CASE WHEN s.stage = 1 AND s.state = 1 THEN s.created END), "
        "MAX(CASE WHEN s.stage = 3 AND s.state = 2 THEN s.created END) "
        "FROM crunch_status s JOIN crunch_dataset d ON d.id = s.dataset_id "
        "JOIN crunch_project p ON p.id = d.project_id WHERE p.slug = %s",
        (slug,),
    )
    return epoch(first), epoch(last)


def epoch(value: Any) -> float:
    """A timestamp as PostgreSQL (datetime) or SQLite (text, UTC) returns it."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())
