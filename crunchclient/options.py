"""Old import path of the client's options: they live in ``crunchclient.config``
(ClientConfig, resolve), ``crunchclient.arguments`` (types, parsers) and
``crunchclient.management.base`` (ClientCommand, logging)."""

from __future__ import annotations

from crunchclient.arguments import (
    add_argument,
    add_client_arguments,
    add_connection_arguments,
    duration,
    positive_int,
    seconds,
)
from crunchclient.config import (
    ENVIRONMENT,
    HEARTBEAT_SECONDS,
    RETRY_FOR_SECONDS,
    ClientConfig,
    default_holder,
    resolve,
    resolve_token,
    resolve_url,
)
from crunchclient.management.base import ClientCommand, configure_logging

__all__ = [
    "ENVIRONMENT", "HEARTBEAT_SECONDS", "RETRY_FOR_SECONDS", "ClientCommand", "ClientConfig",
    "add_argument", "add_client_arguments", "add_connection_arguments", "configure_logging",
    "default_holder", "duration", "positive_int", "resolve", "resolve_token", "resolve_url",
    "seconds",
]  # fmt: skip
