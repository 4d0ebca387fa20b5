"""Heartbeat: renews the lease of the claim being processed, on a connection of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from crunchclient.exceptions import ClaimLost, ClientError
from crunchclient.server.connection import Connection
from crunchclient.settings.config import ClientConfig
from crunchclient.worker.context import RunContext

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """One thread and one HTTP session for a worker's whole run, not one per dataset.

    Each dataset is watched while its stages run; its lease is renewed every
    ``heartbeat_seconds`` from the moment it is watched. When the server has dropped the
    claim, the dataset's context is flagged ``lost``.
    """

    def __init__(self, connection: Connection, config: ClientConfig) -> None:
        super().__init__(name="crunch heartbeat", daemon=True)
        self.connection = connection.clone()
        self.interval = max(0.05, config.heartbeat_seconds)
        self.lease_seconds = config.lease_seconds
        self.changed = threading.Condition()
        self.context: RunContext | None = None
        self.stopped = False
        self.said = ""  # the last warning: a refusal that lasts is said once

    @contextmanager
    def watching(self, context: RunContext) -> Iterator[None]:
        """Renew ``context``'s claim while the block runs."""
        self._watch(context)
        try:
            yield
        finally:
            self._watch(None)

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            while (context := self._due()) is not None:
                self._renew(context)
        finally:
            self.connection.close()

    def _watch(self, context: RunContext | None) -> None:
        with self.changed:
            self.context = context
            self.changed.notify()  # a new interval starts now

    def _due(self) -> RunContext | None:
        """Wait until the watched claim's lease is due for renewal; None once stopped."""
        with self.changed:
            while not self.stopped:
                context = self.context
                if context is None or context.lost.is_set():
                    self.changed.wait()
                elif not self.changed.wait(self.interval) and self.context is context:
                    return None if self.stopped else context
            return None

    def _renew(self, context: RunContext) -> None:
        try:
            self.connection.renew(str(context.claim.id), lease_seconds=self.lease_seconds)
        except ClaimLost:
            with self.changed:
                current = self.context is context
            if current:  # else the dataset ended while the renewal was under way
                logger.warning(
                    "%s: the server dropped our claim; stopping the dataset", context.slug
                )
                context.lost.set()
        except ClientError as exc:  # keep working: the lease may survive the outage
            said = f"{context.slug}: could not renew the lease: {exc}"
            if said != self.said:  # once, not at every beat of a long outage
                logger.warning("%s", said)
            self.said = said
        else:
            self.said = ""
