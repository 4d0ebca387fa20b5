"""What the client sends: statuses and claim requests, each with its own idempotency key.

A key is made once per status or claim request, so every retry of the same call is
recorded once by the server, however often its answer is lost. ``Connection`` turns
each into JSON (``to_wire``); nothing else builds a request body by hand.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from crunch.choices import Stage, State


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Diagnostics:
    """Facts about the machine, sent with each status (and with a claim, as its Setup
    Start's), named as django-crunch 0.1 sends them. A fact that is None is not sent."""

    agent_user: str
    version: str
    revision: str
    system: str
    system_release: str
    system_version: str
    machine: str
    hostname: str
    ip_address: str
    mac_address: str
    memory_total: int | None = None
    memory_free: int | None = None
    slurm_job_id: str | None = None
    slurm_array_task_id: str | None = None
    disk_total: int | None = None
    disk_free: int | None = None

    def to_wire(self) -> dict[str, Any]:
        found = ((item.name, getattr(self, item.name)) for item in fields(self))
        return {name: value for name, value in found if value is not None}


@dataclass(frozen=True, kw_only=True)
class NextRequest:
    """A claim request. One key for every retry of it: a lost answer does not claim twice.

    ``start``: the diagnostics of the run's Setup Start, recorded with the claim;
    ``project``: the project to claim from, when it goes with a status (``next``);
    ``count``: claim up to that many at once (a loop with slots), answered as a list;
    ``slots``: the slot of each claim's Setup Start; ``client``: the loop, for the pages;
    ``memory`` (bytes) and ``seconds``: what the client can give one dataset; the server
    hands out only datasets that need no more (a client that says nothing gets only those
    that need nothing).
    """

    holder: str
    lease_seconds: int
    start: Diagnostics | None = None
    project: str | None = None
    count: int | None = None
    slots: tuple[int, ...] = ()
    client: Mapping[str, Any] | None = None
    memory: int | None = None
    seconds: int | None = None
    key: str = field(default_factory=new_key)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "holder": self.holder, "lease_seconds": self.lease_seconds, "key": self.key,
        }  # fmt: skip
        if self.start is not None:
            body["start"] = self.start.to_wire()
        if self.project:
            body["project"] = self.project
        if self.count is not None:
            body["count"] = self.count
        if self.slots and self.count is not None and self.start is not None:
            body["slots"] = list(self.slots)
        if self.client is not None:
            body["client"] = dict(self.client)
        for name in ("memory", "seconds"):
            if (value := getattr(self, name)) is not None:
                body[name] = value
        return body


AGE_SENT = 0.05
"""A status older than this when its call is built says how old (see ``StatusReport.made``)."""
MAX_AGE = 86400.0  # the most the server accepts


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """A status with its own key: recorded once, however often its post is retried.

    ``diagnostics`` are the machine's facts (see worker/diagnostics.py); ``extra`` the
    fields of one stage, e.g. the Workflow Start's ``workflow_sha256``; ``image_digest``
    the Workflow Start's digest of the container image it runs in (``sha256:`` and 64
    hex digits), sent only when there is one; ``slot`` the loop's slot that ran it. A Fail's
    ``reason`` (a crunch.choices.FailReason value; the server records "unknown" when none is
    sent), ``reason_detail``, and the ``memory`` (bytes) and ``seconds`` (time limit) the run
    had, each sent only when given.
    """

    dataset: int
    stage: Stage
    state: State
    claim: str
    note: str = ""
    diagnostics: Diagnostics | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    image_digest: str = ""
    slot: int | None = None
    reason: str = ""
    reason_detail: str = ""
    memory: int | None = None
    seconds: int | None = None
    key: str = field(default_factory=new_key)
    made: float = field(default_factory=time.monotonic, compare=False)
    """When it happened (the monotonic clock): a status queued for a later call says its age."""

    @property
    def results(self) -> Mapping[str, Any] | None:
        """The results an Upload Success carries (in ``extra``), if any."""
        found = self.extra.get("results")
        return found if isinstance(found, Mapping) else None

    @property
    def results_size(self) -> int:
        """About how many bytes its results add to a call (0 without results)."""
        found = self.results
        return 0 if found is None else len(json.dumps(found, separators=(",", ":")))

    def to_wire(self, *, next: NextRequest | None = None) -> dict[str, Any]:
        """The JSON the API reads; with ``next`` it also asks for the next claim."""
        body: dict[str, Any] = {
            "dataset": self.dataset, "stage": int(self.stage), "state": int(self.state),
            "note": self.note, "claim": self.claim, "key": self.key,
            **(self.diagnostics.to_wire() if self.diagnostics else {}), **self.extra,
        }  # fmt: skip
        if self.image_digest:
            body["image_digest"] = self.image_digest
        if self.slot is not None:
            body["slot"] = self.slot
        if (age := time.monotonic() - self.made) >= AGE_SENT:
            body["age"] = round(min(age, MAX_AGE), 3)
        for name in ("reason", "reason_detail", "memory", "seconds"):
            if (value := getattr(self, name)) not in ("", None):
                body[name] = value
        if next is not None:
            body["next"] = next.to_wire()
        return body
