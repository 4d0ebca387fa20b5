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

import secrets
from pathlib import Path

import pytest

from tests.clientkit import SIX, Crunch, statuses
from tests.e2e.nodekit import (
    AWS,
    OTHER,
    SETTINGS_SECRET,
    SUBMIT_SECRET,
    background_workflow,
    stop_and_check,
    tool,
)

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_sigterm_during_a_sandboxed_workflow_leaves_nothing(node: Crunch) -> None:
    tool("bwrap", "bubblewrap")
    marker = f"9{secrets.randbelow(10**6):06d}"
    project = node.project("Sandboxed", background_workflow(marker))
    dataset = node.dataset(project["slug"], "one")
    stop_and_check(node, dataset["slug"], marker, "--isolation", "sandbox")
