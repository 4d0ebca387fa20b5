"""A maintainer's commands on a project and its datasets: ``crunch project
show|set|pause|resume`` and ``crunch release``. Each sends one change and returns the line
that says what changed."""

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
    retry: tuple[Override, ...] = ()
    """``--retry`` rules, each replacing its reason's override (None: back to the default)."""

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

    def with_policy(self, current: dict[str, Any]) -> dict[str, Any]:
        """``body()`` with the project's retry policy (now ``current``) changed by ``retry``."""
        body = self.body()
        if self.retry:
            body["retry_policy"] = policy_with(current, self.retry)
        return body


Override = tuple[str, dict[str, Any] | None]
"""A reason and its new rule (only the fields given), or None to remove its override."""

RETRY_SYNTAX = "REASON=retry|never[,free|spend][,delay=SECONDS|backoff], or REASON=default"


def parse_retry(text: str) -> Override:
    """One ``--retry`` value: ``out-of-memory=retry,delay=600``, ``input-missing=retry,free``,
    ``exit-code=never``, ``cancelled=default``. Only what it says changes: the fields not
    named keep their default. ConfigurationError (exit 2) in one line otherwise."""
    from crunch.choices import FailReason

    reason, sep, spec = text.partition("=")
    reason = reason.strip()
    if not sep or reason not in FailReason.values:
        raise ConfigurationError(
            f"--retry {text!r}: give {RETRY_SYNTAX}; reasons: {', '.join(FailReason.values)}."
        )
    words = [word.strip() for word in spec.split(",")]
    if words == ["default"]:
        return reason, None
    rule: dict[str, Any] = {}
    for word in words:
        name, _, value = word.partition("=")
        if word in ("retry", "never"):
            rule["retry"] = word == "retry"
        elif word in ("free", "spend"):
            rule["spend"] = word == "spend"
        elif name == "delay" and value == "backoff":
            rule["delay"] = None
        elif name == "delay" and value.isascii() and value.isdigit():
            rule["delay"] = int(value)
        else:
            raise ConfigurationError(f"--retry {text!r}: {word!r} is not one of {RETRY_SYNTAX}.")
    return reason, rule


def policy_with(current: dict[str, Any], overrides: tuple[Override, ...]) -> dict[str, Any]:
    """The policy ``current`` with each override set (or removed, when None)."""
    policy = dict(current)
    for reason, rule in overrides:
        if rule is None:
            policy.pop(reason, None)
        else:
            policy[reason] = rule
    return policy


def rule_text(rule: dict[str, Any]) -> str:
    """A rule as ``--retry`` writes it: ``retry,free,delay=0``, ``never``."""
    if not rule.get("retry", True):
        return "never"
    delay = rule.get("delay")
    spent = "spend" if rule.get("spend", True) else "free"
    return f"retry,{spent},delay={'backoff' if delay is None else delay}"


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
    if not changes.body() and not changes.retry:
        raise ConfigurationError(
            "Nothing to change: give --workflow, --container, --max-attempts, --retry-delay, "
            "--retry, --public or --private."
        )
    before = connection.project_detail(slug)
    after = connection.change_project(slug, changes.with_policy(before.get("retry_policy") or {}))
    return f"Project {slug!r}: {described(before, after)}."


def show_project(connection: Connection, slug: str) -> str:
    """A project's settings and its retry policy as it applies, reason by reason."""
    project = connection.project_detail(slug)
    lines = [
        f"Project {slug!r}: {project.get('name')}; "
        f"{'paused' if project.get('paused') else 'handing out datasets'}; "
        f"{'public' if project.get('is_public') else 'private'}.",
        f"Workflow: {project.get('workflow_kind')}, SHA-256 "
        f"{short_sha(project.get('workflow') or '')}; "
        f"container: {project.get('container') or 'none'}.",
        f"Attempts: {project.get('max_attempts')}; retry delay {project.get('retry_delay')}s, "
        "doubled per attempt (backoff).",
        "Retry policy (crunch project set --retry REASON=...):",
    ]
    rules = project.get("retry_rules") or {}
    width = max((len(reason) for reason in rules), default=0)
    for reason, rule in rules.items():
        mark = "" if rule.get("default") else "  (set for this project)"
        lines.append(f"  {reason:<{width}}  {rule_text(rule)}{mark}")
    return "\n".join(lines)


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
    old_rules, new_rules = before.get("retry_rules") or {}, after.get("retry_rules") or {}
    for reason, rule in new_rules.items():
        if reason in old_rules and rule_text(old_rules[reason]) != rule_text(rule):
            changed.append(f"{reason} {rule_text(old_rules[reason])} -> {rule_text(rule)}")
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
