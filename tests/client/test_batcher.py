"""The Batcher groups the slots' statuses and claims into few calls, against a live server:
what needs no answer waits for the next call; a slot waiting for an answer makes one at
once, carrying everything queued; a refusal stops its own dataset only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crunch.choices import Stage, State
from crunch.models import Dataset
from crunch.services import claims as claim_service
from crunchclient.exceptions import ClaimLost
from crunchclient.server.bodies import NextRequest, StatusReport
from crunchclient.server.connection import Connection
from crunchclient.server.wire import Claim
from crunchclient.worker import diagnostics
from crunchclient.worker.batcher import Batcher
from tests.clientkit import SIX, Crunch, statuses

pytestmark = pytest.mark.django_db(transaction=True)

START = diagnostics.collect()


@pytest.fixture
def project(crunch: Crunch) -> str:
    slug = crunch.project("Batches", "true\n")["slug"]
    for i in range(4):
        crunch.dataset(slug, f"d{i}")
    return str(slug)


@pytest.fixture
def batcher(crunch: Crunch) -> Iterator[Batcher]:
    batcher = Batcher(Connection(crunch.url, crunch.token, retry_for=5), linger=60)
    yield batcher
    batcher.stop()


def request(project: str, count: int) -> NextRequest:
    return NextRequest(
        holder="test", lease_seconds=60, project=project, count=count, start=START,
        slots=tuple(range(count)),
    )  # fmt: skip


def report(claim: Claim, stage: int, state: int, **fields: Any) -> StatusReport:
    return StatusReport(
        dataset=claim.dataset.id, stage=Stage(stage), state=State(state), claim=str(claim.id),
        **fields,
    )  # fmt: skip


def settle(batcher: Batcher) -> None:
    """Give the batcher's thread a moment to do what it would do now."""
    time.sleep(0.3)


def test_statuses_that_need_no_answer_ride_with_the_next_call(
    batcher: Batcher, project: str
) -> None:
    batcher.start()
    taken = batcher.claim(request(project, 3))
    assert (len(taken), batcher.calls, batcher.batches) == (3, 1, True)  # one call, three claims
    lost = {claim.id: threading.Event() for claim in taken}
    for claim in taken:  # three slots: Setup Success and Workflow Start, no answer needed
        batcher.send([report(claim, 1, 2), report(claim, 2, 1)], wait=False, lost=lost[claim.id])
    settle(batcher)
    assert batcher.calls == 1  # queued, not sent
    answer = batcher.send([report(taken[0], 2, 3, note="boom")])  # a Fail waits for its answer
    assert batcher.calls == 2  # one call carried all seven statuses
    assert answer.dataset_state in ("failed", "pending")
    assert statuses(taken[0].dataset.slug) == [(1, 1), (1, 2), (2, 1), (2, 3)]
    for claim in taken[1:]:
        assert statuses(claim.dataset.slug) == [(1, 1), (1, 2), (2, 1)]
    assert not any(event.is_set() for event in lost.values())


def test_a_refused_status_stops_its_dataset_only(batcher: Batcher, project: str) -> None:
    batcher.start()
    first, second, third = batcher.claim(request(project, 3))
    claim_service.release(second.id, note="taken back")  # an operator releases one
    lost = threading.Event()
    batcher.send([report(first, 1, 2)], wait=False)
    batcher.send([report(second, 1, 2), report(second, 2, 1)], wait=False, lost=lost)
    with pytest.raises(ClaimLost):
        batcher.send([report(second, 2, 2)])  # the same dataset, waiting: refused too
    assert lost.is_set()
    batcher.send([report(third, 1, 2), report(third, 2, 1)])
    assert statuses(first.dataset.slug) == [(1, 1), (1, 2)]
    assert statuses(third.dataset.slug) == [(1, 1), (1, 2), (2, 1)]
    assert Dataset.objects.get(pk=second.dataset.id).state == "pending"


def test_slots_ending_together_claim_their_next_in_one_call(
    crunch: Crunch, batcher: Batcher, project: str
) -> None:
    (first, second), counted = Connection(crunch.url, crunch.token).claim_many(request(project, 2))
    batcher.batches = counted  # as the loop's first claim, through the batcher, tells it
    answers: dict[int, Any] = {}

    def finish(slot: int, claim: Claim) -> None:
        reports = [report(claim, *pair) for pair in SIX[1:]]
        answers[slot] = batcher.send(reports, next=request(project, 1))

    threads = [
        threading.Thread(target=finish, args=(slot, claim))
        for slot, claim in enumerate((first, second))
    ]
    for thread in threads:  # both slots end while the batcher is busy (not started yet)
        thread.start()
    while len(batcher.queue) < 2:
        time.sleep(0.01)
    batcher.start()
    for thread in threads:
        thread.join(10)
    assert batcher.calls == 1  # both runs' statuses and both next claims
    assert statuses(first.dataset.slug) == statuses(second.dataset.slug) == SIX
    nexts = {answers[0].next.dataset.slug, answers[1].next.dataset.slug}
    assert len(nexts) == 2 and not nexts & {first.dataset.slug, second.dataset.slug}


def test_a_lone_status_goes_after_the_linger(crunch: Crunch, project: str) -> None:
    batcher = Batcher(Connection(crunch.url, crunch.token, retry_for=5), linger=0.2)
    batcher.start()
    try:
        (claim,) = batcher.claim(request(project, 1))
        batcher.send([report(claim, 1, 2), report(claim, 2, 1)], wait=False)
        assert batcher.calls == 1  # not at once
        deadline = time.monotonic() + 10
        while len(statuses(claim.dataset.slug)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert batcher.calls == 2
        assert statuses(claim.dataset.slug) == [(1, 1), (1, 2), (2, 1)]
    finally:
        batcher.stop()
