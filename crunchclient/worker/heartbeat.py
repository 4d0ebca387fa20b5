"""Heartbeat: renews the lease of the claim being processed, on a connection of its own;
Renewals: the same for every claim a loop's slots hold, in one call."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from crunchclient.exceptions import ClaimLost, ClientError
from crunchclient.server.connection import Connection
from crunchclient.settings.config import ClientConfig
from crunchclient.worker.context import RunContext

logger = logging.getLogger(__name__)


class Watcher(Protocol):
    """What renews the lease of a dataset while its stages run."""

    def watching(self, context: RunContext) -> AbstractContextManager[None]: ...


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


class Renewals(threading.Thread):
    """The heartbeat of a loop with slots: every claim its slots hold, renewed in one call
    every ``heartbeat_seconds`` (one call per claim where the server takes no batches).
    A claim the server no longer gives us flags its dataset's context ``lost``."""

    def __init__(
        self, connection: Connection, config: ClientConfig, *, client: dict[str, Any],
        batches: Callable[[], bool | None],
    ) -> None:  # fmt: skip
        super().__init__(name="crunch heartbeat", daemon=True)
        self.connection = connection.clone()
        self.interval = max(0.05, config.heartbeat_seconds)
        self.lease_seconds = config.lease_seconds
        self.client = client  # the loop as the pages show it: its holder and slots
        self.batches = batches
        self.changed = threading.Condition()
        self.contexts: dict[str, RunContext] = {}
        self.stopped = False
        self.said = ""

    @contextmanager
    def watching(self, context: RunContext) -> Iterator[None]:
        """Renew ``context``'s claim with the others while the block runs."""
        claim = str(context.claim.id)
        with self.changed:
            self.contexts[claim] = context
            self.changed.notify()
        try:
            yield
        finally:
            with self.changed:
                self.contexts.pop(claim, None)

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            while self._due():
                self._renew()
        finally:
            self.connection.close()

    def _due(self) -> bool:
        """Wait one interval with claims to renew; False once stopped."""
        with self.changed:
            while not self.stopped and not self.contexts:
                self.changed.wait()
            due = time.monotonic() + self.interval
            while not self.stopped and (left := due - time.monotonic()) > 0:
                self.changed.wait(left)  # a dataset watched or ended does not cut it short
            return not self.stopped

    def _renew(self) -> None:
        with self.changed:
            held = {claim: c for claim, c in self.contexts.items() if not c.lost.is_set()}
        if not held:
            return
        try:
            lost = self._lost(list(held))
        except ClientError as exc:  # keep working: the leases may survive the outage
            said = f"Could not renew the leases of {len(held)} dataset(s): {exc}"
            if said != self.said:
                logger.warning("%s", said)
            self.said = said
            return
        self.said = ""
        for claim in lost:
            with self.changed:
                context = self.contexts.get(claim)
            if context is not None:  # else the dataset ended while the renewal was under way
                logger.warning(
                    "%s: the server dropped our claim; stopping the dataset", context.slug
                )
                context.lost.set()

    def _lost(self, claims: list[str]) -> list[str]:
        """The claims among ``claims`` that the server no longer gives us."""
        if self.batches():
            answer = self.connection.renew_many(
                claims, lease_seconds=self.lease_seconds, client=self.client
            )
            return answer.lost
        lost = []
        for claim in claims:
            try:
                self.connection.renew(claim, lease_seconds=self.lease_seconds)
            except ClaimLost:
                lost.append(claim)
        return lost
