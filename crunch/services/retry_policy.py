"""A project's retry policy: per failure reason, whether a failed run is retried, whether
it spends one of the dataset's attempts, and how long the dataset waits first.

The project stores only its overrides (``Project.retry_policy``, e.g. ``{"out-of-memory":
{"retry": false}}``); every field not given is the code's default below, so a default
improved in a later version reaches every project that did not set it. Nothing here reads
the database: the status paths (crunch.services.statuses, batches, leases) call ``after_fail``
on rows they already hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ValidationError

from crunch.choices import WALL_TIME, DatasetState, FailReason

MAX_DELAY = 30 * 24 * 3600  # seconds: the longest delay a rule may set


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What a failure of one reason does to its dataset."""

    retry: bool = True
    """Pending again (while attempts remain); else failed at once, until ``crunch retry``."""
    spend: bool = True
    """The attempt counted at claim time stays counted; else it is given back."""
    delay: int | None = None
    """Seconds before it may be claimed again; None: the project's retry_delay, doubled per
    attempt (the backoff of every failure before reasons)."""

    def as_dict(self) -> dict[str, Any]:
        return {"retry": self.retry, "spend": self.spend, "delay": self.delay}


BACKOFF = Rule()
FREE = Rule(spend=False, delay=0)
NEVER = Rule(retry=False)

DEFAULTS: dict[str, Rule] = {
    FailReason.EXIT_CODE: BACKOFF,
    FailReason.SIGNAL: BACKOFF,
    FailReason.OUT_OF_MEMORY: BACKOFF,
    FailReason.TIME_LIMIT: BACKOFF,
    FailReason.LOST_LEASE: FREE,
    FailReason.INPUT_MISSING: NEVER,
    FailReason.TOOL_MISSING: NEVER,
    FailReason.TRANSFER: BACKOFF,
    FailReason.CANCELLED: FREE,
    FailReason.RESULTS: NEVER,
    FailReason.UNKNOWN: BACKOFF,
}
"""The code's policy: a cancelled run or a lost client is not the dataset's fault (retried
at once, no attempt spent); a missing input, tool or result does not fix itself (failed at
once: someone fixes it and runs ``crunch retry``); the rest back off as before."""

FIELDS = ("retry", "spend", "delay")


@dataclass(frozen=True)
class Policy:
    """The code's defaults with a project's overrides on top."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: Any) -> Policy:
        """The policy of a project's stored ``retry_policy`` (checked when it was saved)."""
        return cls(stored) if isinstance(stored, Mapping) else cls()

    def rule(self, reason: str) -> Rule:
        base = DEFAULTS.get(reason, DEFAULTS[FailReason.UNKNOWN])
        given = self.overrides.get(reason) or {}
        return replace(base, **{k: v for k, v in given.items() if k in FIELDS})

    def rules(self) -> dict[str, dict[str, Any]]:
        """Every reason's rule as it applies, with ``default``: whether the project left it."""
        return {
            reason: {**self.rule(reason).as_dict(), "default": reason not in self.overrides}
            for reason in FailReason.values
        }


def check_policy(value: Any) -> None:
    """Refuse a retry policy crunch cannot apply, in one line (the model field's validator:
    the admin and the API both run it)."""
    clean_policy(value)


def clean_policy(value: Any) -> dict[str, dict[str, Any]]:
    """The overrides of ``value`` as stored: ``{reason: {field: value}}``, fields among
    retry (bool), spend (bool) and delay (seconds or null); ValidationError otherwise."""
    if not isinstance(value, Mapping):
        raise _invalid(
            f"A retry policy is an object {{reason: {{retry, spend, delay}}}}, not "
            f"{type(value).__name__}."
        )
    cleaned: dict[str, dict[str, Any]] = {}
    for reason, rule in value.items():
        if reason not in FailReason.values:
            raise _invalid(
                f"Unknown failure reason {str(reason)[:40]!r} in the retry policy; use one of "
                f"{', '.join(FailReason.values)}."
            )
        if not isinstance(rule, Mapping):
            raise _invalid(
                f"The retry policy's rule for {reason!r} is an object with retry, spend or "
                f"delay, not {type(rule).__name__}."
            )
        for name, given in rule.items():
            _check_field(reason, name, given)
        cleaned[reason] = {name: rule[name] for name in FIELDS if name in rule}
    return cleaned


def _check_field(reason: str, name: Any, given: Any) -> None:
    if name not in FIELDS:
        raise _invalid(
            f"Unknown field {str(name)[:40]!r} in the retry policy's rule for {reason!r}; "
            "use retry, spend or delay."
        )
    if name in ("retry", "spend") and not isinstance(given, bool):
        raise _invalid(f"{name!r} of {reason!r} is true or false, not {given!r}.")
    if name == "delay" and given is not None and (
        isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= MAX_DELAY
    ):  # fmt: skip
        raise _invalid(
            f"'delay' of {reason!r} is a whole number of seconds from 0 to {MAX_DELAY}, or "
            f"null for the project's backoff; not {str(given)[:40]!r}."
        )


def _invalid(message: str) -> ValidationError:
    return ValidationError(message, code="retry_policy")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Where a failed run leaves its dataset."""

    state: DatasetState
    attempts: int
    not_before: datetime.datetime | None
    held: bool
    """Failed because the policy does not retry the reason (attempts may remain)."""


def after_fail(
    *,
    policy: Policy,
    reason: str,
    detail: str,
    attempts: int,
    max_attempts: int,
    retry_delay: int,
    now: datetime.datetime,
) -> Outcome:
    """Apply the rule of ``reason`` to a dataset that failed after ``attempts`` (counted at
    claim time, this run's included).

    A ``time-limit`` of the task's wall time (detail ``wall-time``) never spends an attempt,
    whatever the policy: the task ran out of time, not the dataset.
    """
    rule = policy.rule(reason)
    if not rule.spend or (reason == FailReason.TIME_LIMIT and detail == WALL_TIME):
        attempts = max(attempts - 1, 0)
    if not rule.retry or attempts >= max_attempts:
        return Outcome(
            state=DatasetState.FAILED, attempts=attempts, not_before=None, held=not rule.retry
        )
    delay = rule.delay if rule.delay is not None else retry_delay * 2 ** max(attempts - 1, 0)
    not_before = now + datetime.timedelta(seconds=delay) if delay else None
    return Outcome(state=DatasetState.PENDING, attempts=attempts, not_before=not_before, held=False)


def needs_after(
    *,
    reason: str,
    detail: str,
    memory: int | None,
    seconds: int | None,
    needs_memory: int | None,
    needs_seconds: int | None,
) -> tuple[int | None, int | None]:
    """The memory and time the dataset's next run needs: more than an out-of-memory run had,
    more than a time-limited run was given (not when the task's wall time stopped it)."""
    if reason == FailReason.OUT_OF_MEMORY and memory is not None:
        needs_memory = max(needs_memory or 0, memory + 1)
    if reason == FailReason.TIME_LIMIT and detail != WALL_TIME and seconds is not None:
        needs_seconds = max(needs_seconds or 0, seconds + 1)
    return needs_memory, needs_seconds
