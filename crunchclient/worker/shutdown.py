"""Graceful stop on SIGTERM/SIGINT: the first signal winds down, the second exits at once.

A scheduler sends SIGTERM at wall time. The current dataset is then reported and its
claim released, rather than left for its lease to expire.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)

OWN_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)
"""Popen arguments that give the workflow its own process group, to stop it as a whole.

The workflow stays in the client's session: Linux's autogroup shares the CPU fairly
between sessions, so a workflow in a session of its own competes with the client's
nice-19 hashing threads as an equal (on 2 cores a CPU-bound workflow ran twice as long).
Python 3.10 has no process_group and falls back to a new session.
"""


class Shutdown:
    """Set by the first signal; the stages poll it and the workflow subprocesses (one per
    slot of the loop) are stopped."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self.children: set[subprocess.Popen[bytes]] = set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self, name: str) -> None:
        self.signal_name = name
        self.event.set()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            logger.warning("Received %s again - exiting now", name)
            for child in list(self.children):
                kill_group(child, signal.SIGKILL)
            os._exit(128 + signum)
        logger.warning(
            "Received %s - finishing: stopping the workflow, reporting the dataset and "
            "releasing its claim (send again to force)",
            name,
        )
        self.request(name)

    @contextmanager
    def installed(self) -> Iterator[Shutdown]:
        """Handle the signals while the block runs (main thread only), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            # Once stopping, keep handling: a second signal while we wind down exits at once.
            if not self.requested:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)


def kill_group(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Send sig to the process group of a workflow started with OWN_GROUP."""
    if process is None or process.poll() is not None:
        return
    signal_group(process.pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    """Send sig to process group pgid, if any process is left in it."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
