"""Statuses of many datasets in one pass: a loop with several slots reports them together.

The usual batch (every claim still held, no key seen before) costs three statements
whatever its size: the rows locked, the statuses inserted, the datasets updated; the
results of its Upload Successes a few more, also whatever their number (one
``result_store.Plan``). A dataset that is not so (a retried batch, a lost claim, a status
after its run ended, an unknown dataset, results its project's schema refuses) is left
out of the pass, its statuses recorded one by one by the caller, each with its own
answer; the other datasets' statuses are recorded all the same.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from crunch.choices import DatasetState, Stage, State
from crunch.db import batched, statements
from crunch.db.statements import Condition, Locked
from crunch.exceptions import InvalidResults
from crunch.models import Dataset, Status
from crunch.services.notes import cut_note
from crunch.services.result_store import Plan
from crunch.services.statuses import DIAGNOSTIC_FIELDS, Report, failure_fields, move


@dataclass(frozen=True)
class Entry:
    """One status of a batch: on which dataset (id or slug), under which claim, what."""

    dataset: int | str
    claim_id: uuid.UUID | None
    report: Report


def ends_run(report: Report) -> bool:
    """Whether the status ends its run (a Fail, or Upload Success): the claim goes with it."""
    return report.state == State.FAIL or (
        report.stage == Stage.UPLOAD and report.state == State.SUCCESS
    )


def record_batch(
    entries: list[Entry], *, user: Any = None, allowed: Condition | None = None,
    savepoint: bool = True,
) -> list[Status | None]:  # fmt: skip
    """Record the statuses of every dataset whose run they may simply go on; one Status per
    entry recorded, None for those left to record one by one (in order, by the caller).

    All or none of a dataset's statuses are recorded here, in order, each with its own
    time, and its last one's results stored. None for every entry when two requests record
    the same key at the same moment (the caller's one-by-one pass finds the status the
    other recorded), or add a result key with two kinds: inside a caller's transaction
    (``savepoint=False``) that transaction must then be rolled back.
    """
    user_pk = getattr(user, "pk", None)
    keys = sorted({e.report.key for e in entries if e.report.key})
    try:
        with transaction.atomic(savepoint=savepoint):
            rows = batched.lock_datasets(
                [e.dataset for e in entries], keys=keys, user_pk=user_pk, allowed=allowed
            )
            by_id = {row.dataset.pk: row for row in rows}
            by_name: dict[int | str, Locked] = {row.dataset.slug: row for row in rows}
            by_name.update((row.dataset.pk, row) for row in rows)
            groups: dict[int, list[int]] = defaultdict(list)  # dataset id: entry indexes
            for index, entry in enumerate(entries):
                found = by_name.get(entry.dataset)
                if found is not None:
                    groups[found.dataset.pk].append(index)
            fast = {
                pk for pk, indexes in groups.items()
                if goes_on(by_id[pk], [entries[i] for i in indexes], user_pk=user_pk)
            }  # fmt: skip
            results = Plan.of([
                (by_id[pk].dataset, entries[groups[pk][-1]].report.results or {})
                for pk in sorted(fast) if entries[groups[pk][-1]].report.results is not None
            ])  # fmt: skip
            fast -= set(results.refused)  # each refused alone, by the caller
            results.write()
            made: list[tuple[int, Status]] = []
            for index, entry in enumerate(entries):
                found = by_name.get(entry.dataset)
                if found is None or found.dataset.pk not in fast:
                    continue
                made.append((index, status_of(found.dataset, entry, user)))
            stored = statements.insert_statuses([s for _, s in made]) if made else []
            batched.advance_datasets([by_id[pk].dataset for pk in sorted(fast)])
    except (IntegrityError, InvalidResults):
        return [None] * len(entries)
    recorded: list[Status | None] = [None] * len(entries)
    for (index, _), status in zip(made, stored, strict=True):
        recorded[index] = status
    return recorded


def goes_on(found: Locked, entries: list[Entry], *, user_pk: Any) -> bool:
    """Whether the statuses ``entries`` simply go on the held run of ``found``: its claim,
    held by this user, no key seen before, and only the last of them may end the run."""
    dataset = found.dataset
    return (
        found.allowed
        and found.seen is None
        and dataset.state == DatasetState.RUNNING
        and dataset.claim_id is not None
        and all(e.claim_id == dataset.claim_id for e in entries)
        and (user_pk is None or dataset.claim_user_id == user_pk)
        and not any(ends_run(e.report) for e in entries[:-1])
    )


def status_of(dataset: Dataset, entry: Entry, user: Any) -> Status:
    """The status of ``entry`` on its locked ``dataset``, which it moves on."""
    report = entry.report
    note = cut_note(report.note)
    fields = {k: v for k, v in report.diagnostics.items() if k in DIAGNOSTIC_FIELDS}
    status = Status(
        dataset=dataset, stage=report.stage, state=report.state, note=note,
        claim_id=entry.claim_id, key=report.key or None,
        created=report.made(dataset, timezone.now()),
        user=user if getattr(user, "pk", None) else None, slot=report.slot,
        workflow_sha256=report.workflow_sha256, image_digest=report.image_digest,
        **failure_fields(report.state, report.failure), **fields,
    )  # fmt: skip
    move(dataset, status)
    Report.moved(dataset, status)
    return status
