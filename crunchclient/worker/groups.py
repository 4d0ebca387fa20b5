"""A workflow's processes live and end together, and never outlive their client.

The workflow runs in a process group of its own (shutdown.OWN_GROUP). When it exits or is
stopped, the whole group is ended: SIGTERM, then SIGKILL after a grace period, so a
background child (``(sleep 15; echo late > late.txt) &``) neither runs on nor writes
after Upload. However the client dies, even by SIGKILL, the group dies too:

- on Linux the group's first process gets PR_SET_PDEATHSIG (SIGKILL when its parent
  dies): set by util-linux's ``setpriv --pdeathsig`` run in front of the workflow where
  the node has it, else between fork and exec (``die_with_parent``). A fork of the client
  copies its page tables (3 ms a workflow on a VM); setpriv lets Python start the child
  with vfork and costs one small exec instead;
- a watchdog process, one per client and started with its first workflow, is told
  each group's id over a pipe. The pipe closes when the client dies, however it dies;
  the watchdog then ends every group it was told of, and exits. PDEATHSIG alone hits
  only the group's first process, not its children.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from crunchclient.worker._watchdog import alive, end_groups

__all__ = [
    "WATCHDOG_PROCESS", "Watchdog", "alive", "die_with_parent", "end_group", "orphan_guard",
]  # fmt: skip

logger = logging.getLogger(__name__)

GRACE = 5.0  # seconds a group gets between SIGTERM and SIGKILL
PR_SET_PDEATHSIG = 1
WATCHDOG = Path(__file__).with_name("_watchdog.py")


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _libc_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the client dies (Linux), or None.

    Only the thread that starts the child counts as its parent: start it from a thread
    that outlives it (the stages' thread does).
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the client died before prctl took effect
            os._exit(137)

    return preexec


@functools.cache
def setpriv_pdeathsig() -> tuple[str, ...] | None:
    """``setpriv --pdeathsig KILL --`` when this node's setpriv has the option (util-linux
    2.33 and later, Linux only), checked once; None otherwise."""
    setpriv = shutil.which("setpriv") if _PRCTL is not None else None
    if setpriv is None:
        return None
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if probe.returncode == 0 else None


def orphan_guard(argv: list[str], path: str | None) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start argv with PDEATHSIG set: behind setpriv where it can
    (no preexec_fn, so no fork of the client), else through die_with_parent(). ``path``
    is the PATH argv[0] is found on: a missing command keeps subprocess's own error."""
    prefix = setpriv_pdeathsig()
    if prefix is not None and shutil.which(argv[0], path=path) is not None:
        return [*prefix, *argv], None
    return argv, die_with_parent()


def end_group(pgid: int, grace: float = GRACE) -> None:
    """End every process of group pgid: SIGTERM, then SIGKILL to what runs after grace."""
    end_groups({pgid}, grace)


class Watchdog:
    """The process that ends the client's workflow groups once the client is gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None

    def _tell(self, line: str) -> None:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(WATCHDOG), str(GRACE)],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(f"{line}\n".encode())
                self.process.stdin.flush()
            except OSError as exc:
                logger.warning("The workflow watchdog is gone (%s)", exc)

    def watch(self, pgid: int) -> None:
        """End group pgid if the client dies before it is unwatched."""
        self._tell(f"+{pgid}")

    def unwatch(self, pgid: int) -> None:
        self._tell(f"-{pgid}")


WATCHDOG_PROCESS = Watchdog()
"""The client's one watchdog, started with its first workflow."""
