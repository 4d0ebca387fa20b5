"""The answers of the batched calls a loop with slots makes (see docs/how-to/whole-nodes.md):
several claims at once, the statuses of several datasets in one call, every held claim
renewed in one call. Typed as wire.py types the single calls'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crunchclient.exceptions import ServerError
from crunchclient.server.wire import Claim, StatusAnswer, number, text


def claims_of(answer: Any) -> tuple[list[Claim], bool]:
    """The claims a claim request answered, and whether the server takes ``count``: a
    server that does answers ``{"claims": [...]}``; an older one a claim, or nothing (204)."""
    if answer is None:
        return [], False
    if isinstance(answer, Mapping) and "claims" in answer:
        items = answer["claims"]
        if not isinstance(items, list):
            raise ServerError(f"The server sent claims as {type(items).__name__}, not a list.")
        return [Claim.from_wire(item) for item in items], True
    return [Claim.from_wire(answer)], False


@dataclass(frozen=True, kw_only=True)
class StatusResult:
    """One status of a batch: recorded (201, or 200 when its key was seen before) with the
    server's answer, or refused (409: the claim is gone; 404, 403, 400) with why."""

    code: int
    answer: StatusAnswer | None = None
    detail: str = ""

    @property
    def recorded(self) -> bool:
        return self.code < 300

    @classmethod
    def from_wire(cls, data: Any) -> StatusResult:
        if not isinstance(data, Mapping):
            raise ServerError(f"The server sent a batch result as {type(data).__name__}.")
        try:
            code = number(data["code"])
        except (KeyError, ValueError):
            raise ServerError("The server sent a batch result without its code.") from None
        if code < 300:
            return cls(code=code, answer=StatusAnswer.from_wire(data.get("status") or {}))
        return cls(code=code, detail=text(data.get("detail")) or f"HTTP {code}")


@dataclass(frozen=True, kw_only=True)
class BatchAnswer:
    """``statuses/batch/`` given an object: each status's result, in order, and the claims
    its ``next`` took."""

    results: list[StatusResult]
    claims: list[Claim]

    @classmethod
    def from_wire(cls, data: Any, sent: int) -> BatchAnswer:
        if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
            raise ServerError(
                "The server answered a batch of statuses without its 'results': upgrade the "
                "server, or run the loop without --slots."
            )
        results = [StatusResult.from_wire(item) for item in data["results"]]
        if len(results) != sent:
            raise ServerError(f"The server answered {len(results)} results for {sent} statuses.")
        claims, _ = claims_of({"claims": data.get("claims") or []})
        return cls(results=results, claims=claims)


@dataclass(frozen=True, kw_only=True)
class Renewal:
    """``claims/renew/``: the claims renewed, and those the caller no longer holds."""

    renewed: list[str]
    lost: list[str]

    @classmethod
    def from_wire(cls, data: Any) -> Renewal:
        if not isinstance(data, Mapping):
            raise ServerError(f"The server answered a renewal as {type(data).__name__}.")
        renewed = [text(item.get("id")) for item in data.get("renewed") or [] if item]
        return cls(renewed=renewed, lost=[text(item) for item in data.get("lost") or []])
