"""The watchdog of a client's workflows (see groups.py): ends their process groups once
the client is gone.

Run as ``python -I -S _watchdog.py GRACE`` with the client holding its stdin: each line
``+PGID`` or ``-PGID`` starts or stops watching a group. At the end of stdin (the client
exited or was killed, even by SIGKILL) or on SIGTERM, each watched group gets SIGTERM,
then SIGKILL after GRACE seconds. Standard library only: it starts in milliseconds, and
groups.py imports its functions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

POLL = 0.05  # seconds between checks that a group has ended
FIRST_POLL = 0.001  # seconds before the first check: doubled up to POLL


def alive(pgid: int, *, look: bool = True) -> bool:
    """Whether a process of group pgid still runs (zombies, which nobody may reap in a
    container whose first process is no init, do not count). Without look, a zombie
    counts: no walk through /proc (one file per process of the node)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not look or not os.path.isdir("/proc/self"):
        return True
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def end_groups(pgids: set[int], grace: float) -> None:
    """End every process of the groups: SIGTERM, then SIGKILL to what runs after grace."""
    for pgid in list(pgids):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pgids.discard(pgid)
    deadline = time.monotonic() + grace
    pause = FIRST_POLL  # a group that is ending (a sandbox's PID 1) goes in a moment
    # First without looking into /proc: a sandbox's last processes are zombies for a moment
    # after it exits, until the node's init reaps them.
    look = False
    while pgids := {pgid for pgid in pgids if alive(pgid, look=look)}:
        if time.monotonic() >= deadline:
            for pgid in pgids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(pause)
        pause = min(POLL, pause * 2)
        look = True


def main(grace: float) -> None:
    watched: set[int] = set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl+C is the client's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.stdin.close())
    pending = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except (OSError, ValueError):
            chunk = b""
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                pgid = int(line[1:])
                if line.startswith(b"+"):
                    watched.add(pgid)
                elif line.startswith(b"-"):
                    watched.discard(pgid)
    end_groups(watched, grace)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
