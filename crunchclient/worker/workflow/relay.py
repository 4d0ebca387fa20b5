"""Relay a workflow's stdout and stderr to the screen and its log while waiting for it.

One loop on the calling thread reads both pipes as data arrives (a selector), watches
the stop flags and notices the exit: no reader threads to start for each dataset, and
no lock between them. Output is passed on by lines, a long line in chunks, as
``readline(CHUNK)`` would: a 3 MB line costs no more memory than 64 KiB.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, Protocol

from crunchclient.worker.shutdown import kill_group, signal_group

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024  # bytes of output relayed at once: a line without end is not held whole
POLL = 0.1  # seconds between checks of the stop flags while the workflow runs
GRACE = 5.0  # seconds a stopped workflow gets before it is killed, and its pipes after it


class Keeper(Protocol):
    def add(self, chunk: bytes) -> None: ...


class Stream:
    """One pipe's way out: lines masked, written to the log and the screen, maybe kept."""

    def __init__(
        self, screen: IO[str], log: IO[bytes], mask: Callable[[bytes], bytes],
        keep: Keeper | None,
    ) -> None:  # fmt: skip
        self.screen, self.log, self.mask, self.keep = screen, log, mask, keep
        self.pending = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        self.pending += data
        while self.pending:
            end = self.pending.find(b"\n", 0, CHUNK)
            if end < 0 and len(self.pending) < CHUNK:
                return  # the rest of the line has not come yet
            cut = end + 1 if end >= 0 else CHUNK
            line = bytes(self.pending[:cut])
            del self.pending[:cut]
            self.emit(line)

    def close(self) -> None:
        if self.pending:
            self.emit(bytes(self.pending))
            self.pending.clear()

    def emit(self, line: bytes) -> None:
        line = self.mask(line)
        self.log.write(line)
        self.log.flush()
        try:
            self.screen.write(self.decoder.decode(line))
            self.screen.flush()
        except (OSError, ValueError):
            pass  # no screen (closed or gone): the log has it
        if self.keep is not None:
            self.keep.add(line)


# One select loop over the two pipes, the exit and the stop request: split, it reads worse.
def relay_until_exit(  # noqa: C901, PLR0912
    process: subprocess.Popen[bytes], streams: dict[IO[bytes], Stream],
    *, stopping: Callable[[], bool], slug: str,
) -> int:  # fmt: skip
    """Relay ``streams`` (pipe: its way out) until the process exits and its pipes end;
    stop it (SIGTERM, then SIGKILL after GRACE) once ``stopping()``. Its exit code.

    Once it exits, what is left of its process group (background children) gets SIGTERM,
    and SIGKILL if it still holds the pipes GRACE seconds later: a workflow's work ends
    with it (the caller then waits for the group to end, see groups.end_group).
    """
    code: int | None = None
    kill_at = drain_until = 0.0
    with selectors.DefaultSelector() as selector:
        for pipe, stream in streams.items():
            selector.register(pipe, selectors.EVENT_READ, stream)
        while True:
            now = time.monotonic()
            if code is None:
                code = process.poll()
            if code is not None:
                if not drain_until:
                    drain_until = now + GRACE
                    signal_group(process.pid, signal.SIGTERM)
                if not selector.get_map():
                    break
                if now >= drain_until:
                    signal_group(process.pid, signal.SIGKILL)
                    break
            elif not kill_at and stopping():
                # The caller says why (the signal, the lost claim, --timeout): not again here.
                logger.debug("%s: stopping the workflow (pid %s)", slug, process.pid)
                kill_group(process, signal.SIGTERM)
                kill_at = now + GRACE
            elif kill_at and now >= kill_at:
                kill_group(process, signal.SIGKILL)
                kill_at = float("inf")
            if not selector.get_map():
                # Its output is closed but it runs on: wait for it, still watching the flags.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = process.wait(timeout=POLL)
                continue
            for key, _ in selector.select(POLL if code is None else drain_until - now):
                data = os.read(key.fd, CHUNK)
                if data:
                    key.data.feed(data)
                else:
                    selector.unregister(key.fileobj)
    for pipe, stream in streams.items():
        stream.close()
        pipe.close()
    return code
