"""Fixtures and helpers of the client and end-to-end tests: a real server, real storage,
the client as a real subprocess. Imported by tests/client/conftest.py and tests/e2e/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.factories import make_client_user, make_user
from tests.servers import GunicornServer, test_database_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CRUNCH = str(BIN / "crunch")
SIX = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
RECORDS = {
    ".crunch/dataset.json", ".crunch/project.json", ".crunch/setup_md5_checksums.json",
    ".crunch/workflow.log", ".crunch/upload_md5_checksums.json", ".crunch/deleted.txt",
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a client subprocess: no CRUNCH_* or AWS_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "AWS_", "DJANGO_"))}
    env["AWS_CONFIG_FILE"] = "/nonexistent-crunch-aws-config"
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent-crunch-aws-credentials"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Crunch:
    """A live server, a storage folder and a token: everything a client subprocess needs."""

    url: str
    token: str
    media: Path
    work: Path
    settings_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    maintainer: str = ""
    """A site-wide maintainer's token, for the API calls that set a test up (the client's
    own token is a worker's, which may not create projects); made when first needed."""

    @property
    def env(self) -> dict[str, str]:
        return clean_env(
            CRUNCH_URL=self.url, CRUNCH_TOKEN=self.token,
            CRUNCH_STORAGE_SETTINGS=str(self.settings_file), **self.extra_env,
        )  # fmt: skip

    @property
    def maintainer_env(self) -> dict[str, str]:
        """The client's environment with the maintainer's token (``crunch retry``)."""
        return {**self.env, "CRUNCH_TOKEN": self.maintainer_token()}

    def maintainer_token(self) -> str:
        if not self.maintainer:
            self.maintainer = make_user("crunch-maintainer", role="maintainer")[1]
        return self.maintainer

    def api(self, method: str, path: str, *, as_worker: bool = False, **body: Any) -> Any:
        """Call the API as the maintainer (or as the client's worker), expecting success."""
        token = self.token if as_worker else self.maintainer_token()
        response = requests.request(
            method, f"{self.url}/api/{path}", json=body or None,
            headers={"Authorization": f"Token {token}"}, timeout=30,
        )  # fmt: skip
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    def project(self, name: str, workflow: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("allow_empty", True)  # most tests' datasets have no files
        return self.api("POST", "projects/", name=name, workflow=workflow, **fields)

    def dataset(
        self, project: str, name: str, files: dict[str, str] | None = None
    ) -> dict[str, Any]:
        dataset = self.api("POST", "datasets/", parent=project, name=name)
        for rel, text in (files or {}).items():
            path = self.media / dataset["base_file_path"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return dataset

    def stored(self, dataset: dict[str, Any]) -> dict[str, str]:
        """{relative path: text} of every file the dataset has in storage."""
        base = self.media / dataset["base_file_path"]
        return {
            p.relative_to(base).as_posix(): p.read_text(errors="replace")
            for p in sorted(base.rglob("*")) if p.is_file()
        }  # fmt: skip

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None,  # noqa: E501
            command: list[str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run ``crunch ARGS`` (or ``command ARGS``) to the end."""
        return subprocess.run(
            [*(command or [CRUNCH]), *args], env=env or self.env, cwd=cwd or self.work,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(
        self, *args: str, env: dict[str, str] | None = None, command: list[str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*(command or [CRUNCH]), *args], env=env or self.env, cwd=self.work,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


def statuses(slug: str) -> list[tuple[int, int]]:
    from crunch.models import Status

    return [
        (s.stage, s.state)
        for s in Status.objects.filter(dataset__slug=slug).order_by("created", "id")
    ]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last line on stderr, after checking there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, f"nothing on stderr; stdout: {result.stdout}"
    return lines[-1]


def write_local_settings(path: Path, media: Path) -> Path:
    path.write_text(
        "# The server's storage, as the compute client sees it.\n"
        "[STORAGES.default]\n"
        'BACKEND = "django.core.files.storage.FileSystemStorage"\n'
        "[STORAGES.default.OPTIONS]\n"
        f"location = {json.dumps(str(media))}\n"
    )
    return path


@pytest.fixture
def crunch(live_server: Any, media_root: Path, tmp_path: Path) -> Crunch:
    """A live server (its own thread, sharing the test database) and local storage."""
    _, token = make_client_user("worker")
    work = tmp_path / "client"
    work.mkdir()
    settings_file = write_local_settings(tmp_path / "storage.toml", media_root)
    return Crunch(
        url=live_server.url, token=token, media=media_root, work=work, settings_file=settings_file
    )


MakeCrunch = Callable[..., Crunch]


@contextmanager
def gunicorn_crunch(media_root: Path, tmp_path: Path, **server_env: str) -> Iterator[Crunch]:
    """A worker's Crunch against gunicorn (two processes) serving the test database, with
    ``server_env`` added to the server's environment."""
    _, token = make_client_user("worker")
    work = tmp_path / "client"
    work.mkdir()
    env = clean_env(CRUNCH_MEDIA_ROOT=str(media_root), **test_database_env(), **server_env)
    server = GunicornServer(port=free_port(), env=env, log=tmp_path / "gunicorn.log", workers=2)
    server.start(timeout=60)
    try:
        yield Crunch(
            url=server.url, token=token, media=media_root, work=work,
            settings_file=write_local_settings(tmp_path / "storage.toml", media_root),
        )  # fmt: skip
    finally:
        server.stop()


@pytest.fixture
def served_crunch(transactional_db: None, media_root: Path, tmp_path: Path) -> Iterator[Crunch]:
    """``crunch``, but gunicorn (two processes) serves the test database, not live_server.

    live_server answers from one thread of the test process, at a few datasets a second:
    the tests that process a thousand datasets use this one. It runs the testproject's own
    settings: what a test sets with pytest-django's ``settings`` does not reach it.
    """
    with gunicorn_crunch(media_root, tmp_path) as crunch:
        yield crunch
