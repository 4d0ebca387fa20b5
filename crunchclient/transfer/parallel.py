"""Scheduling: small files in batches, large ones first, on a pool that stops at the
first error; at most ``--jobs`` batches at once in the process, however many slots copy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from crunchclient.transfer.progress import Progress, TransferCancelled

BATCH_FILES = 64  # small files handled by one worker task, to keep pool overhead low
BATCH_BYTES = 16 * 1024 * 1024  # bytes: a batch closes once it holds this much
FAST_FILE = 100e-6  # seconds: a local file copied faster than this is not waiting on the disk

T = TypeVar("T")

SHARED: list[threading.BoundedSemaphore] = []
"""The process's transfer limit while a loop with slots runs (see ``shared_jobs``)."""


@contextmanager
def shared_jobs(jobs: int) -> Iterator[None]:
    """Within the block, the transfers of every thread share ``jobs`` places: N slots do
    not open N times --jobs copies."""
    SHARED.append(threading.BoundedSemaphore(max(1, jobs)))
    try:
        yield
    finally:
        SHARED.pop()


def limited(work: Callable[[list[T]], None]) -> Callable[[list[T]], None]:
    """``work`` taking one of the shared places while it runs, when there is a limit."""
    if not SHARED:
        return work
    places = SHARED[-1]

    def run(batch: list[T]) -> None:
        with places:
            work(batch)

    return run


def batches(items: list[tuple[T, int]]) -> Iterator[list[T]]:
    """Group (item, size) so that one pool task handles many small files."""
    batch: list[T] = []
    size = 0
    for item, length in items:
        if length >= BATCH_BYTES:
            yield [item]
            continue
        batch.append(item)
        size += length
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def run_parallel(
    work: Callable[[list[T]], None],
    items: list[tuple[T, int]],
    jobs: int,
    progress: Progress,
    *,
    local: bool = False,
) -> None:
    """Run work on batches of items, (item, size) sorted large first, on at most jobs threads.

    The first error, or Ctrl+C, cancels the rest: workers stop at their next chunk and
    remove their partial files, so the pool winds down in a moment.

    On local disk the first batch of several files runs on this thread first. Threads
    help while files wait on a disk or a network filesystem; when each small file took
    under FAST_FILE, the kernel answers at once and threads would only pass the GIL to
    each other, so the rest runs here too.
    """
    work = limited(work)
    todo = list(batches(items))
    several = next((i for i, batch in enumerate(todo) if len(batch) > 1), None)
    if local and jobs > 1 and several is not None and len(todo) > 1:
        probe = todo[several]
        started = time.perf_counter()
        work(probe)
        if (time.perf_counter() - started) / len(probe) < FAST_FILE:
            jobs = 1
        todo = todo[:several] + todo[several + 1 :]
    if jobs <= 1 or len(todo) <= 1:
        for batch in todo:
            work(batch)
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="crunch-transfer") as pool:
        futures: list[Future[None]] = [pool.submit(work, batch) for batch in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            _cancel(progress, futures)
            raise
        failed = [
            error
            for future in futures
            if future.done() and not future.cancelled() and (error := future.exception())
        ]
        if failed:
            _cancel(progress, futures)
            # The cause first: the others only stopped because of it.
            failed.sort(key=lambda error: isinstance(error, TransferCancelled))
            raise failed[0]


def _cancel(progress: Progress, futures: list[Future[None]]) -> None:
    progress.cancel()
    for future in futures:
        future.cancel()
