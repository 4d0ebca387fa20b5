"""--jobs is per process: the slots of one loop share its places for copies."""

from __future__ import annotations

import threading
import time

from crunchclient.transfer.parallel import run_parallel, shared_jobs
from crunchclient.transfer.progress import Progress


def test_slots_copying_at_once_share_the_jobs() -> None:
    lock = threading.Lock()
    running = most = 0

    def copy(batch: list[str]) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    def slot(number: int) -> None:  # each slot copies 8 large files with --jobs 3
        items = [(f"{number}/{i}", 64 * 1024 * 1024) for i in range(8)]
        run_parallel(copy, items, 3, Progress("copy", total_bytes=0, total_files=8, quiet=True))

    with shared_jobs(3):
        slots = [threading.Thread(target=slot, args=(n,)) for n in range(4)]
        for thread in slots:
            thread.start()
        for thread in slots:
            thread.join()
    assert most == 3  # not 4 slots x 3
    most = 0
    slot(0)  # outside a loop with slots, --jobs is the one copy's own
    assert most == 3
