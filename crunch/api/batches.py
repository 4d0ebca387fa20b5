"""The object form of ``POST api/statuses/batch/``: statuses of many datasets, each answered
on its own, and the next claims. What a loop with several slots sends in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from crunch.access import may_process
from crunch.api import run_fields
from crunch.api import run_serializers as rs
from crunch.api.exceptions import answer_of
from crunch.api.views import Claimed, claim_with, show_claimed
from crunch.choices import Stage, State
from crunch.models import Status
from crunch.services import batches, statuses

if TYPE_CHECKING:
    from crunch.api.runs import StatusViewSet


def report_of(data: dict[str, Any]) -> statuses.Report:
    """The status a validated status body reports."""
    return statuses.Report(
        stage=Stage(data["stage"]), state=State(data["state"]), note=data.get("note", ""),
        key=data.get("key") or None, workflow_sha256=data.get("workflow_sha256", ""),
        image_digest=data.get("image_digest", ""), slot=data.get("slot"),
        age=data.get("age") or 0.0,
        failure=run_fields.failure_of(data), results=data.get("results"),
        diagnostics={k: v for k, v in data.items() if k in statuses.DIAGNOSTIC_FIELDS},
    )  # fmt: skip


def refused(code: int, detail: str) -> dict[str, Any]:
    return {"code": code, "detail": detail}


def record_batch(view: StatusViewSet, request: Request) -> dict[str, Any]:
    """Record the statuses of a batch's object form; the answer's body.

    The statuses whose runs simply go on are recorded in one pass (crunch.services.batches);
    the others one by one, in order, as if posted alone, each answered with the code it
    would get alone. Once a status is refused, the later ones of its dataset are refused
    alike: a run's statuses are recorded in order or not at all.
    """
    body = rs.BATCH_REQUEST.validate(request.data, view.get_serializer_context())
    results, valid = validated(view, body["statuses"])
    entries = [
        batches.Entry(
            dataset=data["dataset"], claim_id=data.get("claim_id"), report=report_of(data)
        )
        for _, data in valid
    ]
    params = body.get("next")
    together = record_together(request, entries, params) if params is not None else None
    if together is None:
        done = batches.record_batch(entries, user=request.user, allowed=may_process(request.user))
    else:
        done, claimed = together
    record_the_rest(view, request, valid, done, results)
    answer: dict[str, Any] = {"results": results}
    if params is not None:
        if together is None:
            claimed = claim_with(request, params, project=params.get("project") or None)
        shown = show_claimed(claimed)
        if isinstance(shown, dict) and "claims" in shown:
            answer["claims"] = shown["claims"]
        else:
            answer["next"] = shown
    return answer


Results = list[dict[str, Any] | None]
"""Each status's answer, in order (None until it has one)."""


def validated(view: StatusViewSet, raws: list[Any]) -> tuple[Results, list[tuple[int, Any]]]:
    """The answers of the statuses refused as invalid, and the valid ones by position."""
    results: Results = []
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raws):
        try:
            data = rs.STATUS.validate(raw, view.get_serializer_context())
        except ValidationError as exc:
            results.append(refused(*(answer_of(exc) or (400, "Invalid status."))))
            continue
        if data.pop("next", None) is not None:
            results.append(refused(400, "Invalid input. next: give it beside 'statuses'."))
            continue
        results.append(None)
        valid.append((index, data))
    return results, valid


def record_the_rest(
    view: StatusViewSet, request: Request, valid: list[tuple[int, dict[str, Any]]],
    done: list[Status | None], results: Results,
) -> None:  # fmt: skip
    """Answer the statuses the pass recorded, and record the others one by one."""
    stopped: dict[int | str, dict[str, Any]] = {}  # dataset as named: why its run stopped
    for (index, data), recorded in zip(valid, done, strict=True):
        if recorded is not None:
            shown = rs.BATCH_STATUS.show(recorded)
            results[index] = {"code": status.HTTP_201_CREATED, "status": shown}
            continue
        if (earlier := stopped.get(data["dataset"])) is not None:
            results[index] = earlier
            continue
        try:
            row, created = view.record(dict(data))
        except Exception as exc:
            why = answer_of(exc, request)
            if why is None:
                raise
            if why[0] == status.HTTP_404_NOT_FOUND:  # names nothing the caller may not see
                why = (why[0], "No dataset has the id or slug given, or you may not see it.")
            results[index] = stopped[data["dataset"]] = refused(*why)
            continue
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        results[index] = {"code": code, "status": rs.BATCH_STATUS.show(row)}


class _Separately(Exception):
    """Not every status went in the one pass: the steps go one after another."""


def record_together(
    request: Request, entries: list[batches.Entry], params: dict[str, Any]
) -> tuple[list[Status | None], Claimed] | None:
    """The statuses recorded in one pass and the next claims taken, in one transaction: on
    SQLite one write lock a call, not three (statuses, the loop's record, claims), which
    the other server processes wait for. None, with nothing kept, when a status is left
    out of the pass or the claim fails: the caller then takes the steps one by one, and
    answers each as it did before."""
    try:
        with transaction.atomic():
            done = batches.record_batch(
                entries, user=request.user, allowed=may_process(request.user), savepoint=False
            )
            if None in done:
                raise _Separately
            claimed = claim_with(
                request, params, project=params.get("project") or None, savepoint=False
            )
    except Exception:  # refused, in conflict, or left out: redone step by step
        return None
    return done, claimed
