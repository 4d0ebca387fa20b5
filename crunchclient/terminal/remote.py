"""What the terminal commands share: a Connection from their options,
and a storage named the way a person would look for it."""

from __future__ import annotations

import logging
from typing import Any

from crunchclient.server.connection import Connection
from crunchclient.server.http import START_RETRY_FOR
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
