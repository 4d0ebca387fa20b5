"""Issue 26, must show 1 and 3: the audit's payload, run as a workflow through
``crunch loop``, steals nothing in the default sandbox, and steals everything with
``--isolation none`` (so the test can fail); SIGTERM during a sandboxed workflow releases
the dataset and leaves none of its processes.

The client's home, work folder and storage settings file are made outside /tmp (which the
sandbox replaces by its own): hiding them must come from the sandbox's own rules, not from
the tests' temporary folders happening to be under /tmp. The sandbox needs bubblewrap:
without it these tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import SIX, Crunch, statuses, write_local_settings

pytestmark = pytest.mark.django_db(transaction=True)

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


def payload(directory: Path, project: str) -> str:
    """The audit's workflow, and what else a workflow could read on the node."""
    return (
        "tr '\\0' '\\n' </proc/$PPID/environ | grep -E 'CRUNCH_TOKEN|AWS_' >stolen.txt; "
        'cat "$CRUNCH_STORAGE_SETTINGS" >>stolen.txt; '
        "cat ~/.crunch/submit/* >>stolen.txt 2>/dev/null; "
        f"ls {directory}/{project}/ >>stolen.txt; "
        "tr '\\0' '\\n' </proc/1/environ >>stolen.txt\n"
        "true  # /proc/1 of the machine may be unreadable without the sandbox\n"
    )


def steal(node: Crunch, *options: str) -> tuple[str, str]:
    """Run the payload through ``crunch loop OPTIONS`` beside an already processed dataset
    of the same project: the stored stolen.txt and the client's stderr."""
    tool("bwrap", "bubblewrap")
    directory = node.work / "crunch-work"
    project = node.project("Audit", payload(directory, "audit"))
    assert project["slug"] == "audit"
    other = node.dataset("audit", OTHER)
    harmless = node.work / "harmless.sh"
    harmless.write_text("echo done > done.txt\n")
    first = node.run("run", other["slug"], "--quiet", "--path", str(harmless))
    assert first.returncode == 0, first.stderr
    assert [p.name for p in (directory / "audit").iterdir()] == [OTHER]  # its folder is there
    target = node.dataset("audit", "target")
    result = node.run("loop", "--quiet", *options)
    assert result.returncode == 0, result.stderr
    assert statuses(target["slug"]) == SIX
    return node.stored(target)["stolen.txt"], result.stderr


def leaks(node: Crunch) -> dict[str, str]:
    """{what: the text that shows it leaked}."""
    return {
        "the token": node.token,
        "the token's name": "CRUNCH_TOKEN=",
        "the AWS key id": AWS["AWS_ACCESS_KEY_ID"],
        "the AWS secret": AWS["AWS_SECRET_ACCESS_KEY"],
        "the settings' secret": SETTINGS_SECRET,
        "the settings file": "[STORAGES.default]",
        "the storage's location": str(node.media),
        "~/.crunch/submit": SUBMIT_SECRET,
        "the other dataset": OTHER,
    }


def test_the_default_sandbox_leaves_the_payload_nothing_to_steal(node: Crunch) -> None:
    stolen, stderr = steal(node)
    found = [what for what, text in leaks(node).items() if text in stolen]
    assert found == [], stolen
    assert "unisolated" not in stderr  # the default did not fall back to no isolation
    # the payload did run: ls shows the dataset's own folder, and /proc/1 is the sandbox's
    assert "target" in stolen.split()
    assert "CRUNCH_DATASET=audit:target" in stolen


def test_without_isolation_the_same_payload_steals_everything(node: Crunch) -> None:
    """The control: the payload does reach what the sandbox hides, so the test above can fail."""
    stolen, _ = steal(node, "--isolation", "none")
    expected = leaks(node)
    found = [what for what, text in expected.items() if text in stolen]
    assert found == list(expected), stolen


# ------------------------------------------------------------------ SIGTERM, no process left


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
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
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


def test_sigterm_during_a_sandboxed_workflow_leaves_nothing(node: Crunch) -> None:
    tool("bwrap", "bubblewrap")
    marker = f"9{secrets.randbelow(10**6):06d}"
    project = node.project("Sandboxed", background_workflow(marker))
    dataset = node.dataset(project["slug"], "one")
    stop_and_check(node, dataset["slug"], marker, "--isolation", "sandbox")
