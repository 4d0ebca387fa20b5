"""What the client sends: statuses and claim requests, each with its own idempotency key.

A key is made once per status or claim request, so every retry of the same call is
recorded once by the server, however often its answer is lost.
"""

from __future__ import annotations

import uuid
from typing import Any

from crunch.choices import Stage, State


def status_body(
    *, dataset: int, stage: Stage, state: State, claim: str, note: str = "",
    diagnostics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A status with its own key: recorded once, however often its post is retried."""
    return {
        "dataset": dataset, "stage": int(stage), "state": int(state), "note": note,
        "claim": claim, "key": uuid.uuid4().hex, **(diagnostics or {}), **(extra or {}),
    }  # fmt: skip


def next_body(*, holder: str, lease_seconds: int, start: dict[str, Any] | None) -> dict[str, Any]:
    """A claim request. One key for every retry of it: a lost answer does not claim twice."""
    body: dict[str, Any] = {"holder": holder, "lease_seconds": lease_seconds}
    body["key"] = uuid.uuid4().hex
    if start is not None:
        body["start"] = start
    return body
