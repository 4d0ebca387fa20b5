"""Reading the server's replies: what a refusal means, and which failures are no outage.

A DNS failure or a TLS handshake refused on the first contact is a wrong URL, not an
outage: retrying it for half a minute only hides the cause.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

EXPIRED = re.compile(r"\bexpired\b(?: on (?P<when>.+?))?\.?$")
"""The server's 401 for an expired token: "The token has expired." or, with its date,
"The token expired on 2026-05-01 12:00:00 UTC."."""


def token_refused(shown: str, detail: str) -> str:
    """What a 401 means: the token expired (on the date the server names), or it is wrong."""
    if expired := EXPIRED.search(detail):
        when = f" on {expired['when']}" if expired["when"] else " (the server did not say when)"
        return (
            f"The token expired{when}: ask for a new one (crunch_token on the server) and "
            "pass it with --token/CRUNCH_TOKEN."
        )
    return f"The server at {shown!r} refused the token (401 {detail}): check --token/CRUNCH_TOKEN."


def decoded(response: requests.Response) -> Any:
    """The answer's JSON; None when it has none (a 204) or is not JSON (a proxy's page)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def retry_after(response: requests.Response) -> float:
    """The seconds a 429 asks us to wait (its Retry-After), 5 when it says nothing usable."""
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.5), 300.0)
    except ValueError:
        return 5.0


def detail_of(response: requests.Response, data: Any) -> str:
    """The server's one-line ``detail``, or the start of whatever it sent."""
    if data is None:
        return response.reason or response.text[:200].replace("\n", " ")
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"]).replace("\n", " ")
    return str(data)[:200]


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: urllib3 keeps a cause in ``reason``, requests in ``args``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        wrapped = (getattr(error, "reason", None), error.__cause__, error.__context__, *error.args)
        todo += [inner for inner in wrapped if isinstance(inner, BaseException)]


def permanent_cause(exc: Exception, url: str) -> str | None:
    """Why a first contact can never succeed (unknown host, TLS refused); None: retry it."""
    chain = list(causes(exc))
    if any(isinstance(error, requests.exceptions.SSLError) for error in chain):
        reason = str(chain[-1]).split(":")[-1].strip(" )'\"") or "refused"
        return (
            f"The TLS handshake with {url!r} failed ({reason}): if the server speaks plain "
            "HTTP, use an http:// URL; else check its certificate (REQUESTS_CA_BUNDLE)."
        )
    if any(
        isinstance(error, socket.gaierror) or type(error).__name__ == "NameResolutionError"
        for error in chain
    ):
        host = urlsplit(url).hostname or url
        return (
            f"The host {host!r} of {url!r} is not known (its DNS lookup failed): "
            "check --url/CRUNCH_URL."
        )
    return None
