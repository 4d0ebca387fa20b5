"""Issue 26's nodes: the client as a compute node has it (a home with
``~/.crunch/submit``, AWS keys, a storage settings file holding a secret), outside /tmp,
and the checks that a stopped workflow left no process. Its fixtures are registered in
tests/e2e/conftest.py."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, write_local_settings

AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAISOLATIONTEST001",
    "AWS_SECRET_ACCESS_KEY": "isolation-aws-secret-0001",
}
SETTINGS_SECRET = "settings-file-secret-key-0001"
SUBMIT_SECRET = "submit-env-token-0001"
OTHER = "elsewhere-9f3c"  # the name of the project's other, already processed dataset


def tool(name: str, package: str) -> str:
    """The path of ``name``; a skip where it is missing, a failure in CI (which installs it)."""
    path = shutil.which(name)
    if path is None:
        missing = f"{name} is missing: apt-get install --no-install-recommends {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside /tmp where it can be (/var/tmp), removed afterwards."""
    base = Path("/var/tmp")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="crunch-isolation-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def node(crunch: Crunch, outside: Path) -> Crunch:
    """The client as a compute node has it: a home with ``~/.crunch/submit/*.env``, AWS
    keys in its environment, a storage settings file holding a secret, all outside /tmp."""
    home = outside / "home"
    (home / ".crunch" / "submit").mkdir(parents=True)
    (home / ".crunch" / "submit" / "x.env").write_text(f"CRUNCH_TOKEN={SUBMIT_SECRET}\n")
    settings_file = write_local_settings(outside / "storage.toml", crunch.media)
    with settings_file.open("a") as settings:
        settings.write(
            '\n[STORAGES.backup]\nBACKEND = "x.Y"\n[STORAGES.backup.OPTIONS]\n'
            f'secret_key = "{SETTINGS_SECRET}"\n'
        )
    work = outside / "client"
    work.mkdir()
    extra = {**AWS, "HOME": str(home), "USER": os.environ.get("USER") or "crunch"}
    return dataclasses.replace(crunch, work=work, settings_file=settings_file, extra_env=extra)


def wait_for_stage(slug: str, stage: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Status.objects.filter(dataset__slug=slug, stage=stage, state=1).exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{slug} never reached stage {stage}")


def wait_for_process(marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pgrep(marker):
            return
        time.sleep(0.1)
    raise AssertionError(f"no process with {marker!r} started")


def pgrep(marker: str) -> list[str]:
    """``pgrep -f marker``: the ids of the processes whose command line holds it."""
    found = subprocess.run(
        [tool("pgrep", "procps"), "-f", marker], capture_output=True, text=True, check=False
    )
    return found.stdout.split()


def background_workflow(marker: str) -> str:
    """A workflow that leaves a child in the background and waits: ``sleep MARKER1 &``."""
    return f"sleep {marker}1 &\nsleep {marker}2\n"


def stop_and_check(node: Crunch, slug: str, marker: str, *options: str) -> None:
    """SIGTERM to ``crunch loop`` while the workflow runs: exit 130, the dataset pending
    again, no process of the workflow left."""
    client = node.start("loop", "--quiet", *options)
    try:
        wait_for_stage(slug, 2)
        wait_for_process(marker)
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 130, err
    assert "Traceback" not in err
    row = Dataset.objects.get(slug=slug)
    assert (row.state, row.claim_id) == ("pending", None)
    deadline = time.monotonic() + 5
    while pgrep(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pgrep(marker) == []
