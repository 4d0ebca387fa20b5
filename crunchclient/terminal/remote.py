"""What the terminal commands share: a Connection from their options, paged listings,
and a storage named the way a person would look for it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from crunchclient.server.connection import START_RETRY_FOR, Connection
from crunchclient.settings.config import RETRY_FOR_SECONDS, resolve_token, resolve_url


def quiet_transfers(verbosity: int) -> None:
    """Keep the transfer engine's line per folder off the output below --verbosity 2."""
    if verbosity < 2:
        logging.getLogger("crunchclient.transfer").setLevel(logging.WARNING)


def connect(opts: dict[str, Any]) -> Connection:
    """A Connection from --url, --token and --retry-for (each also from the environment)."""
    retry_for = opts.get("retry_for")
    return Connection(
        resolve_url(opts), resolve_token(opts),
        retry_for=RETRY_FOR_SECONDS if retry_for is None else retry_for,
        # Until the server first answers, a short wait unless --retry-for says otherwise.
        start_retry_for=START_RETRY_FOR if retry_for is None else retry_for,
    )  # fmt: skip


def paged(connection: Connection, path: str, **params: str | None) -> Iterator[dict[str, Any]]:
    """Every result of a paginated listing, page after page (DRF's ``next`` links)."""
    given = {key: value for key, value in params.items() if value}
    page = 1
    while True:
        answer = connection.expect("GET", f"{path}?{urlencode({**given, 'page': page})}")
        yield from answer.get("results", [])
        if not answer.get("next"):
            return
        page += 1
