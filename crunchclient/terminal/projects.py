"""A maintainer's commands on a project and its datasets: ``crunch project set|pause|resume``
and ``crunch release``. Each sends one change and returns the line that says what changed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crunchclient.exceptions import ConfigurationError
from crunchclient.server.connection import Connection
from crunchclient.settings import kinds

SHA_SHOWN = 12  # hex digits of a workflow's SHA-256 in messages


@dataclass(frozen=True, kw_only=True)
class Changes:
    """What ``crunch project set`` asks for; None: leave as it is."""

    workflow: Path | None = None
    container: str | None = None
    max_attempts: int | None = None
    retry_delay: int | None = None
    public: bool | None = None

    def body(self) -> dict[str, Any]:
        """The PATCH body: the fields given, the workflow read from its file."""
        body: dict[str, Any] = {}
        if self.workflow is not None:
            body["workflow"] = read_workflow(self.workflow)
            if kind := kinds.kind_of_file(self.workflow):
                body["workflow_kind"] = kind
        if self.container is not None:
            body["container"] = self.container
        if self.max_attempts is not None:
            body["max_attempts"] = self.max_attempts
        if self.retry_delay is not None:
            body["retry_delay"] = self.retry_delay
        if self.public is not None:
            body["is_public"] = self.public
        return body


def read_workflow(path: Path) -> str:
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"Workflow file {str(path)!r} cannot be read ({exc}): check --workflow."
        ) from exc


def short_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:SHA_SHOWN]


def set_project(connection: Connection, slug: str, changes: Changes) -> str:
    """Change a project's workflow, container, attempts, retry delay or visibility; one line
    saying what."""
    body = changes.body()
    if not body:
        raise ConfigurationError(
            "Nothing to change: give --workflow, --container, --max-attempts, --retry-delay, "
            "--public or --private."
        )
    before = connection.project_detail(slug)
    after = connection.change_project(slug, body)
    return f"Project {slug!r}: {described(before, after)}."


def described(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The differences between two answers of ``GET api/projects/P/``, in words."""
    changed = []
    if before.get("workflow") != after.get("workflow"):
        old, new = short_sha(before.get("workflow") or ""), short_sha(after.get("workflow") or "")
        changed.append(f"workflow {old} -> {new} (SHA-256)")
    if before.get("workflow_kind") != after.get("workflow_kind"):
        changed.append(f"workflow kind {before.get('workflow_kind')} -> {after['workflow_kind']}")
    if before.get("container", "") != after.get("container", ""):
        old, new = before.get("container") or "none", after.get("container") or "none"
        changed.append(f"container {old} -> {new}")
    if before.get("max_attempts") != after.get("max_attempts"):
        changed.append(f"max attempts {before.get('max_attempts')} -> {after['max_attempts']}")
    if before.get("retry_delay") != after.get("retry_delay"):
        changed.append(f"retry delay {before.get('retry_delay')}s -> {after['retry_delay']}s")
    if before.get("is_public") != after.get("is_public"):
        changed.append("now public" if after.get("is_public") else "now private")
    return ", ".join(changed) if changed else "nothing changed (it already had these values)"


def set_paused(connection: Connection, slug: str, *, paused: bool) -> str:
    """Pause or resume a project; the line saying what that means."""
    before = connection.project_detail(slug)
    if bool(before.get("paused")) == paused:
        return f"Project {slug!r} is already {'paused' if paused else 'running (not paused)'}."
    body = {"paused": paused}
    connection.change_project(slug, body)
    if paused:
        return (
            f"Project {slug!r} paused: it hands out no dataset; running ones finish. "
            f"Resume with: crunch project resume {slug}"
        )
    return f"Project {slug!r} resumed: its pending datasets are handed out again."


def release(connection: Connection, slug: str) -> str:
    """Return a running dataset to pending now (its client was killed or is stuck).

    A dataset that is not running answers 409, which exits 3 (the server rejected the
    request): there is no claim to release, and no other client to name.
    """
    held = connection.dataset(slug)
    connection.release_dataset(slug)
    holder = f" from {held.claim_holder}" if held.claim_holder else ""
    return (
        f"Released {slug!r}{holder}: it is pending again (the attempt is not counted) "
        "and goes to the next claim."
    )
