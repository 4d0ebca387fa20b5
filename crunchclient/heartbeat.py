"""Heartbeat: renews a claim's lease on its own connection while the stages run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from crunchclient.exceptions import ClaimLost, ClientError
from crunchclient.stages.base import RunContext

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renew the claim's lease in the background; flag the context when the claim is gone."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(name=f"heartbeat {context.slug}", daemon=True)
        self.context = context
        self.done = threading.Event()
        self.connection = context.connection.clone()

    def run(self) -> None:
        context = self.context
        interval = max(0.05, context.config.heartbeat_seconds)
        try:
            while not self.done.wait(interval):
                try:
                    self.connection.renew(
                        str(context.claim.id), lease_seconds=context.config.lease_seconds
                    )
                except ClaimLost:
                    if not self.done.is_set():
                        logger.warning(
                            "%s: the server dropped our claim; stopping the dataset", context.slug
                        )
                        context.lost.set()
                    return
                except ClientError as exc:  # keep working: the lease may survive the outage
                    logger.warning("%s: could not renew the lease: %s", context.slug, exc)
        finally:
            self.connection.close()

    @contextmanager
    def running(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.done.set()
            self.join(timeout=5)
