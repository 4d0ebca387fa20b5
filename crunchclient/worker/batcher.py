"""Batcher: one thread that carries the statuses and claims of a loop's slots to the
server in as few calls as it can (group commit).

A status that needs no answer (a Start, with the Success held before it) is queued and
goes with the next call. A slot that waits for an answer (a Fail, the Upload Success that
claims its next dataset, a claim) has a call made at once, carrying everything queued.
While a call is under way, what arrives waits and goes, all together, in the next one. A
queued status waits at most ``linger`` seconds for company.

A server that answers a claim with one claim, not a list, takes no batches (it predates
them): then each dataset's statuses go in a call of their own and claims one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from crunchclient.exceptions import (
    AccessRemoved,
    ClaimLost,
    ClientError,
    NotFound,
    ProjectPaused,
    ResultsRefused,
    ServerError,
)
from crunchclient.server.batches import StatusResult
from crunchclient.server.bodies import NextRequest, StatusReport, new_key
from crunchclient.server.connection import Connection
from crunchclient.server.wire import Claim, StatusAnswer

logger = logging.getLogger(__name__)

LINGER = 2.0  # seconds a status that needs no answer waits for a call to ride with
MAX_COUNT = 64  # claims one call may ask for
MAX_STATUSES = 1024  # statuses one call may carry
MAX_RESULT_BYTES = 1024 * 1024  # of results one call may carry (the server reads 2.5 MiB)


@dataclass(eq=False)
class Ticket:
    """What one slot hands over at once: statuses of its dataset, and claims it asks for."""

    reports: list[StatusReport]
    wait: bool
    count: int = 0
    request: NextRequest | None = None
    lost: threading.Event | None = None
    confirmed: Callable[[float], None] | None = None
    """Told when the call that recorded its statuses was sent: the claim was held then."""
    size: int = 0
    """Bytes of the results its reports carry."""
    queued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    answer: StatusAnswer = field(default_factory=StatusAnswer)
    claims: list[Claim] = field(default_factory=list)
    error: ClientError | None = None


class Batcher(threading.Thread):
    """The slots' one way to the server for statuses and claims, on its own connection."""

    def __init__(self, connection: Connection, *, linger: float = LINGER) -> None:
        super().__init__(name="crunch batcher", daemon=True)
        self.connection = connection
        self.linger = linger
        self.changed = threading.Condition()
        self.queue: list[Ticket] = []
        self.stopping = False
        self.batches: bool | None = None
        """Whether the server takes batched calls; None until its first claim says."""
        self.failure: ClientError | None = None
        """A call that failed for good (the server unreachable past --retry-for): every
        later one fails with it."""
        self.spare: list[Claim] = []
        """Claims taken for a slot that could not use them: the next claim takes them."""
        self.calls = 0

    # ------------------------------------------------------------------------ the slots' side

    def send(
        self, reports: list[StatusReport], *, next: NextRequest | None = None,
        wait: bool = True, lost: threading.Event | None = None,
        confirmed: Callable[[float], None] | None = None,
    ) -> StatusAnswer:  # fmt: skip
        """Record ``reports`` (one dataset's, in order); with ``next`` also claim one dataset
        (the answer's ``next``). Without ``wait`` they are queued and nothing is answered; a
        refusal then sets ``lost``. Once recorded, ``confirmed`` gets the time the call went."""
        ticket = Ticket(
            reports=reports, wait=wait or next is not None, count=1 if next else 0,
            request=next, lost=lost, confirmed=confirmed,
            size=sum(report.results_size for report in reports),
        )  # fmt: skip
        self._submit(ticket)
        if not ticket.wait:
            return StatusAnswer()
        self._wait(ticket)
        if next is None:
            return ticket.answer
        return replace(ticket.answer, next=ticket.claims[0] if ticket.claims else None)

    def claim(self, request: NextRequest) -> list[Claim]:
        """Claim up to ``request.count`` datasets; fewer (or none) when fewer are pending."""
        ticket = Ticket(reports=[], wait=True, count=request.count or 1, request=request)
        self._submit(ticket)
        self._wait(ticket)
        return ticket.claims

    def stop(self) -> None:
        """Send what is queued, give back spare claims, end the thread."""
        with self.changed:
            self.stopping = True
            self.changed.notify()
        if self.is_alive():
            self.join()

    def _submit(self, ticket: Ticket) -> None:
        with self.changed:
            if self.failure is not None:
                raise self.failure
            self.queue.append(ticket)
            self.changed.notify()

    def _wait(self, ticket: Ticket) -> None:
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    # ------------------------------------------------------------------------ the thread

    def run(self) -> None:
        batch: list[Ticket] = []
        try:
            while (taken := self._next_batch()) is not None:
                batch = taken
                self._call(batch)
        except BaseException as exc:  # a slot waiting on a dead thread would wait forever
            self.failure = ServerError(f"The loop's batcher stopped: {type(exc).__name__}: {exc}")
            with self.changed:
                left, self.queue = [*batch, *self.queue], []
            for ticket in left:
                if not ticket.done.is_set():
                    ticket.error = self.failure
                    ticket.done.set()
            raise
        finally:
            self._give_back_spare()
            self.connection.close()

    def _next_batch(self) -> list[Ticket] | None:
        """Wait until a slot waits for an answer, or a queued status lingered long enough."""
        with self.changed:
            while True:
                queue = self.queue
                now = time.monotonic()
                if queue and (
                    self.stopping or any(ticket.wait for ticket in queue)
                    or now - queue[0].queued >= self.linger
                ):  # fmt: skip
                    return self._take()
                if self.stopping:
                    return None
                self.changed.wait(self.linger - (now - queue[0].queued) if queue else None)

    def _take(self) -> list[Ticket]:
        """The queued tickets, in order, as many as one call may carry; the others (and all
        of a slot's after one left behind) wait for the next call."""
        taken: list[Ticket] = []
        kept: list[Ticket] = []
        count = statuses = size = 0
        for ticket in self.queue:
            full = (
                (ticket.count and count + ticket.count > MAX_COUNT and count)
                or (statuses + len(ticket.reports) > MAX_STATUSES and statuses)
                or (ticket.size and size + ticket.size > MAX_RESULT_BYTES and size)
            )
            if full or kept:
                kept.append(ticket)
                continue
            count += ticket.count
            statuses += len(ticket.reports)
            size += ticket.size
            taken.append(ticket)
        self.queue = kept
        return taken

    def _call(self, batch: list[Ticket]) -> None:
        reports = [report for ticket in batch for report in ticket.reports]
        wanted = sum(ticket.count for ticket in batch)
        claims, self.spare = self.spare[:wanted], self.spare[wanted:]
        template = next((ticket.request for ticket in batch if ticket.request), None)
        request = None
        if template is not None and wanted > len(claims):
            slots = [slot for ticket in batch if ticket.request for slot in ticket.request.slots]
            request = replace(
                template, count=wanted - len(claims), slots=tuple(slots[len(claims) :]),
                key=new_key(),
            )  # fmt: skip
        sent = time.monotonic()
        try:
            results, taken, refused = self._calls(reports, request)
        except ClientError as exc:
            if not isinstance(exc, (ClaimLost, ProjectPaused, NotFound)):
                self.failure = exc  # unreachable, or the token refused: so are the next calls
            self.spare = claims + self.spare
            for ticket in batch:
                ticket.error = exc
                ticket.done.set()
            if not any(ticket.wait for ticket in batch):
                logger.warning("Could not send the slots' statuses: %s", exc)
            return
        self._hand_out(batch, results, claims + taken, refused)
        for ticket in batch:
            if ticket.error is None and ticket.reports and ticket.confirmed is not None:
                ticket.confirmed(sent)

    def _hand_out(
        self, batch: list[Ticket], results: list[StatusResult], claims: list[Claim],
        refused: ClientError | None,
    ) -> None:  # fmt: skip
        """Each ticket's answer (its last status's) or refusal, and its claims; a claim
        refused (the project paused) is the error of the tickets that only claimed."""
        offset = 0
        for ticket in batch:
            mine = results[offset : offset + len(ticket.reports)]
            offset += len(ticket.reports)
            first = next((n for n, result in enumerate(mine) if not result.recorded), None)
            if first is not None:
                ticket.error = refusal(mine[first], ticket.reports[first])
                if ticket.lost is not None and not ticket.wait:
                    logger.warning("%s", ticket.error)
                    ticket.lost.set()
            elif mine and mine[-1].answer is not None:
                ticket.answer = mine[-1].answer
            if ticket.count and not ticket.reports and refused is not None:
                ticket.error = refused
            elif ticket.count and ticket.error is None:
                ticket.claims, claims = claims[: ticket.count], claims[ticket.count :]
            ticket.done.set()
        self.spare += claims

    def _calls(
        self, reports: list[StatusReport], request: NextRequest | None
    ) -> tuple[list[StatusResult], list[Claim], ClientError | None]:
        """The statuses' results, the claims taken and why none could be: in one call
        where the server takes batches, else one call per dataset and per claim."""
        if self.batches and reports:
            self.calls += 1
            answer = self.connection.post_batch(reports, next=request)
            return answer.results, answer.claims, None
        results = self._one_dataset_each(reports) if reports else []
        if request is None:
            return results, [], None
        try:
            return results, self._claim(request), None
        except (ProjectPaused, NotFound) as exc:
            return results, [], exc

    def _one_dataset_each(self, reports: list[StatusReport]) -> list[StatusResult]:
        """Each dataset's statuses in one call of their own (a server without batches)."""
        results: dict[int, StatusResult] = {}
        datasets: dict[str, list[int]] = {}
        for index, report in enumerate(reports):
            datasets.setdefault(report.claim, []).append(index)
        for indexes in datasets.values():
            try:
                self.calls += 1
                answers = self.connection.post_statuses([reports[i] for i in indexes])
            except ClaimLost as exc:
                for index in indexes:
                    results[index] = StatusResult(code=409, detail=str(exc))
                continue
            except ResultsRefused as exc:  # the last status, its results: those before went in
                for index in indexes:
                    refused = reports[index].results is not None
                    code, detail = (400, str(exc)) if refused else (201, "")
                    results[index] = StatusResult(code=code, answer=StatusAnswer(), detail=detail)
                continue
            for index, answer in zip(indexes, answers, strict=True):
                results[index] = StatusResult(code=201, answer=answer)
        return [results[index] for index in range(len(reports))]

    def _claim(self, request: NextRequest) -> list[Claim]:
        """Up to ``request.count`` claims: one call where the server takes ``count``."""
        wanted = request.count or 1
        claims: list[Claim] = []
        while len(claims) < wanted:
            self.calls += 1
            asked = replace(
                request, count=wanted - len(claims), slots=request.slots[len(claims) :],
                key=new_key(),
            )  # fmt: skip
            taken, counted = self.connection.claim_many(asked)
            if taken or counted:
                self.batches = counted
            claims += taken
            if counted or not taken:
                break
        return claims

    def _give_back_spare(self) -> None:
        for claim in self.spare:
            try:
                self.connection.release(str(claim.id), note=STOPPED)
            except ClientError as exc:
                logger.warning("%s: could not release a spare claim: %s", claim.dataset.slug, exc)
        self.spare = []


STOPPED = "Released unstarted: the client stopped."


def refusal(result: StatusResult, report: StatusReport) -> ClientError:
    """Our error for a status the server refused within a batch."""
    if result.code == 409:
        return ClaimLost(result.detail)
    if result.code == 400 and report.results is not None:
        return ResultsRefused(result.detail)  # the server's one line, naming dataset and key
    error: Callable[[str], ClientError] = (
        AccessRemoved if result.code in (403, 404) else ServerError
    )
    return error(
        f"The server refused a status of dataset {report.dataset} ({result.code} {result.detail})."
    )
