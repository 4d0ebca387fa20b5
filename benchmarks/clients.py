"""The simulated clients of benchmarks/capacity.py: threads with a requests.Session each,
doing no work between their calls, until nothing is pending.

``client``: one loop of one slot with the single-claim protocol, as crunch 0.2's
``crunch loop --project`` talks (or the older seven calls a dataset). Kept as the
benchmark has always measured it, so older mains are measured alike.

``loop``: a ``crunch loop --slots N`` on the batched protocol, each "slot" running a clean
run's six statuses per dataset, as the loop's Batcher carries them:

- the first claim asks for ``count`` = slots datasets, with ``start`` (each claim's Setup
  Start recorded with it, naming its slot) and ``client`` (the loop, for the pages);
- then, while it holds claims, one object batch ``POST api/statuses/batch/`` carries every
  held dataset's other five statuses (Setup Success, Workflow Start, Workflow Success,
  Upload Start, Upload Success: what the slots queue and the Upload Success sends) and a
  ``next`` with ``count`` = the slots it frees, answered with their next claims;
- every ``heartbeat`` seconds one ``POST api/claims/renew/`` renews every claim held.

Every status's answer is checked (201), as the Batcher does; a refused one is a refusal of
the run. Both retry 5xx answers and dropped connections with the same keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from benchmarks.baseline import SIX
from benchmarks.harness import session

RETRIES = 5


@dataclass
class Tally:
    """What the client threads did, added up under a lock."""

    datasets: int = 0
    requests: int = 0
    failures: int = 0
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, datasets: int, calls: int, failures: int, refused: list[str]) -> None:
        with self.lock:
            self.datasets += datasets
            self.requests += calls
            self.failures += failures
            self.refused += refused


@dataclass
class Caller:
    """One simulated client's calls: its session, how many it made and how many failed."""

    api: requests.Session
    url: str
    calls: int = 0
    failures: int = 0

    def post(self, path: str, body: object) -> requests.Response | None:
        """The answer below 500; None once RETRIES tries failed (5xx or dropped)."""
        for _ in range(RETRIES):
            self.calls += 1
            try:
                response = self.api.post(f"{self.url}/api/{path}", json=body, timeout=60)
            except requests.RequestException:
                self.failures += 1
                time.sleep(0.05)
                continue
            if response.status_code < 500:
                return response
            self.failures += 1
            time.sleep(0.05)
        return None


def client(n: int, url: str, token: str, next_path: str, start: threading.Barrier,
           tally: Tally, combined: bool = False) -> None:  # fmt: skip
    """Claim and report until nothing is pending; retry 5xx and dropped connections.

    ``combined``: as crunch 0.2's client does, three calls a dataset (the claim records
    the Setup Start; two batches of a Success and the next Start; the Upload Success
    claims the next dataset), else the older seven (a claim, six status posts).
    """
    caller = Caller(session(token), url)
    post = caller.post
    datasets = 0
    refused: list[str] = []
    holder = f"capacity-{n}"

    def ok(response: requests.Response | None, what: str) -> bool:
        if response is not None and response.status_code < 400:
            return True
        text = "no answer" if response is None else f"{response.status_code}: {response.text}"
        refused.append(f"{what}: {text[:200]}")
        return False

    def claim_body() -> dict[str, object]:
        body: dict[str, object] = {"holder": holder, "key": uuid.uuid4().hex}
        return {**body, "start": {"hostname": holder}} if combined else body

    start.wait()
    claim = post(next_path, claim_body())
    body = claim.json() if claim is not None and claim.status_code == 200 else None
    if claim is None or claim.status_code not in (200, 204):
        ok(claim, "claim")
    while body:
        claim_id, dataset = body["claim"]["id"], body["dataset"]["slug"]

        def status(stage: int, state: int) -> dict[str, object]:
            return {"dataset": dataset, "stage": stage, "state": state, "claim": claim_id,
                    "key": f"{claim_id}-{stage}-{state}"}  # fmt: skip

        if combined:
            if not ok(post("statuses/batch/", [status(1, 2), status(2, 1)]), dataset) or not ok(
                post("statuses/batch/", [status(2, 2), status(3, 1)]), dataset
            ):
                break
            last = {**status(3, 2), "next": {**claim_body(), "project": body["project"]["slug"]}}
            answer = post("statuses/", last)
            if not ok(answer, dataset):
                break
            assert answer is not None
            datasets += 1
            body = answer.json().get("next")
            continue
        if not all(ok(post("statuses/", status(*six)), dataset) for six in SIX):
            break
        datasets += 1
        claim = post(next_path, claim_body())
        if claim is None or claim.status_code == 204:
            break
        if not ok(claim, "claim"):
            break
        body = claim.json()
    tally.add(datasets=datasets, calls=caller.calls, failures=caller.failures, refused=refused)


# ---------------------------------------------------------------------------- batched

LEASE_SECONDS = 600
AFTER_START = SIX[1:]
"""The statuses a batch carries for each held dataset: the claim recorded its Setup Start."""


@dataclass(frozen=True)
class Slots:
    """How a simulated loop with slots claims and renews."""

    slots: int
    next_path: str
    """Where its first claim goes: api/projects/<slug>/next/ or api/next/."""
    project: str | None
    """The project its batches' ``next`` claims from; None: from any."""
    heartbeat: float
    """Seconds between its renewals of every claim it holds."""


def loop(n: int, url: str, token: str, plan: Slots, start: threading.Barrier, tally: Tally) -> None:
    """Claim and report with ``plan.slots`` slots until nothing is pending; retry 5xx and
    dropped connections."""
    slots, project, heartbeat = plan.slots, plan.project, plan.heartbeat
    caller = Caller(session(token), url)
    datasets = 0
    refused: list[str] = []
    holder = f"capacity-{n}"
    client = {"holder": holder, "slots": slots}

    def post(path: str, body: object) -> Any:
        """The JSON of a 2xx answer; None (said in ``refused``) otherwise."""
        response = caller.post(path, body)
        if response is None:
            refused.append(f"{path}: no answer")
            return None
        if response.status_code < 300:
            return response.json()
        refused.append(f"{path}: {response.status_code}: {response.text[:200]}")
        return None

    def claim_request(free: list[int]) -> dict[str, Any]:
        return {
            "holder": holder, "lease_seconds": LEASE_SECONDS, "key": uuid.uuid4().hex,
            "start": {"hostname": holder}, "count": len(free), "slots": free, "client": client,
        }  # fmt: skip

    start.wait()
    held = claimed(post(plan.next_path, claim_request(list(range(slots)))), list(range(slots)))
    renew_at = time.monotonic() + heartbeat
    while held:
        if time.monotonic() >= renew_at:
            renew(post, held, client, refused)
            renew_at = time.monotonic() + heartbeat
        statuses = [status(slot, claim, *six) for slot, claim in held for six in AFTER_START]
        free = [slot for slot, _ in held]
        more = claim_request(free) | ({"project": project} if project else {})
        answer = post("statuses/batch/", {"statuses": statuses, "next": more})
        if answer is None:
            break
        results = answer.get("results") or []
        wrong = [result for result in results if result.get("code") != 201]
        if len(results) != len(statuses) or wrong:
            refused.append(f"a batch of {len(statuses)}: {len(wrong)} refused: {wrong[:2]}")
            break
        datasets += len(held)
        held = claimed(answer, free)
    tally.add(datasets=datasets, calls=caller.calls, failures=caller.failures, refused=refused)


def status(slot: int, claim: dict[str, Any], stage: int, state: int) -> dict[str, Any]:
    """A status of the held ``claim``, keyed as ``client`` keys its statuses."""
    claim_id = claim["claim"]["id"]
    return {"dataset": claim["dataset"]["id"], "stage": stage, "state": state,
            "claim": claim_id, "key": f"{claim_id}-{stage}-{state}", "slot": slot}  # fmt: skip


def claimed(answer: Any, free: list[int]) -> list[tuple[int, dict[str, Any]]]:
    """(slot, claim) of each claim an answer gave, the free slots taken in order."""
    claims = (answer or {}).get("claims") or []
    return list(zip(free, claims, strict=False))


def renew(
    post: Callable[[str, object], Any], held: list[tuple[int, dict[str, Any]]],
    client: dict[str, Any], refused: list[str],
) -> None:  # fmt: skip
    """Renew every held claim in one call, as the loop's heartbeat does."""
    ids = [claim["claim"]["id"] for _, claim in held]
    answer = post("claims/renew/", {"claims": ids, "lease_seconds": LEASE_SECONDS,
                                    "client": client})  # fmt: skip
    if answer is not None and answer.get("lost"):
        refused.append(f"a renewal lost {len(answer['lost'])} claims")
