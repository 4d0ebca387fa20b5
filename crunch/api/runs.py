"""The API of compute clients: statuses (alone, in batches, with the next claim) and a
held claim's heartbeat and release. Claiming is in crunch.api.views (``next``)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from crunch.access import Action, datasets_where, may, may_process
from crunch.api import run_fields
from crunch.api import run_serializers as rs
from crunch.api import serializers as s
from crunch.api.batches import record_batch, report_of
from crunch.api.permissions import require
from crunch.api.views import (
    Claimed,
    CrunchAPI,
    claim_with,
    default_holder,
    record_client,
    show_claimed,
)
from crunch.choices import FailReason
from crunch.exceptions import LeaseExpired, NotAllowed
from crunch.models import Dataset, Status
from crunch.services import claims, statuses


class StatusViewSet(
    CrunchAPI,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Status],
):
    """The status history. Posting a status moves the dataset's state."""

    serializer_class = rs.StatusSerializer

    def get_queryset(self) -> QuerySet[Status]:
        visible = datasets_where(self.request.user, Action.VIEW)
        queryset = Status.objects.filter(dataset__in=visible).select_related("dataset")
        if dataset := self.request.query_params.get("dataset"):
            key = "dataset_id" if dataset.isascii() and dataset.isdigit() else "dataset__slug"
            queryset = queryset.filter(**{key: dataset})
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Record one status; with ``next``, also claim the next dataset in the same call."""
        data = rs.STATUS.validate(request.data, self.get_serializer_context())
        params = data.get("next")
        claimed: Claimed = None
        if params is None:
            status_row, created = self.record(dict(data))
        else:
            try:
                # One transaction without savepoints: one commit (on SQLite one write lock).
                with transaction.atomic():
                    status_row, created = self.record(dict(data), savepoint=False)
                    claimed = self.claim_next(params, savepoint=False)
            except Exception:
                # Refused or in conflict (a retried key): nothing was kept; each step alone,
                # so the status stays recorded when the claim is refused.
                status_row, created = self.record(dict(data))
                claimed = self.claim_next(params)
        body = rs.STATUS.show(status_row)
        if params is not None:
            # Shown after the commit: the write lock (SQLite's, or the rows') is not held for it.
            body["next"] = show_claimed(claimed)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        request=PolymorphicProxySerializer(
            "StatusBatch",
            [rs.StatusSerializer(many=True), rs.BatchRequestSerializer],
            None,
            many=False,
        ),
        responses={
            201: rs.StatusSerializer(many=True),
            200: rs.BatchResultSerializer,
        },
    )
    @action(detail=False, methods=["post"], pagination_class=None)
    def batch(self, request: Request) -> Response:
        """Record several statuses in order (a stage's Success with the next one's Start).

        A list: statuses of one run, each recorded as if posted alone, with its own time;
        the first refused one stops the batch and answers its error (those before it stay
        recorded). An object ({"statuses": [...], "next": {...}}): statuses of any
        datasets, each answered on its own in "results"; a refused one refuses only the
        later ones of its dataset. With "next", the next claims too.
        """
        if isinstance(request.data, dict):
            return Response(record_batch(self, request))
        items = rs.STATUS.validate_many(request.data, self.get_serializer_context())
        recorded = self.record_run(items) or [self.record(data)[0] for data in items]
        return Response(rs.STATUS.show_many(recorded), status=status.HTTP_201_CREATED)

    def record_run(self, items: list[dict[str, Any]]) -> list[Status] | None:
        """The usual batch, statuses of one held claim, in one pass; None for any other."""
        claim_ids = {data.get("claim_id") for data in items}
        datasets = {data["dataset"] for data in items}
        claim_id = claim_ids.pop() if len(claim_ids) == 1 else None
        if len(items) < 2 or claim_id is None or len(datasets) != 1:
            return None
        reports = [report_of(data) for data in items]
        return statuses.record_run(
            dataset=datasets.pop(), claim_id=claim_id, reports=reports,
            user=self.request.user, allowed=may_process(self.request.user),
        )  # fmt: skip

    def record(self, data: dict[str, Any], *, savepoint: bool = True) -> tuple[Status, bool]:
        diagnostics = {
            name: data.pop(name) for name in list(data) if name in statuses.DIAGNOSTIC_FIELDS
        }
        user = self.request.user
        try:
            return statuses.record_status(
                dataset=data["dataset"],
                stage=data["stage"],
                state=data["state"],
                note=data.get("note", ""),
                claim_id=data.get("claim_id"),
                key=data.get("key") or None,
                user=user,
                diagnostics=diagnostics,
                workflow_sha256=data.get("workflow_sha256", ""),
                image_digest=data.get("image_digest", ""),
                slot=data.get("slot"),
                failure=run_fields.failure_of(data),
                results=data.get("results"),
                may_start=lambda dataset: require(user, Action.PROCESS, dataset.project),
                allowed=may_process(user),
                savepoint=savepoint,
            )
        except NotAllowed as exc:
            # 403 when the user may see the project; else as a dataset that does not exist.
            lookup = statuses.dataset_lookup(data["dataset"])
            dataset = Dataset.objects.select_related("project").filter(**lookup).first()
            if dataset is not None and may(user, Action.VIEW, dataset.project):
                require(user, Action.PROCESS, dataset.project)
                raise PermissionDenied(str(exc)) from None  # the role came since: refused
            raise unknown_dataset(data["dataset"]) from None
        except Dataset.DoesNotExist:
            raise unknown_dataset(data["dataset"]) from None
        except LeaseExpired:
            # Refused claims of private projects look like unknown datasets: no leak.
            lookup = statuses.dataset_lookup(data["dataset"])
            if not datasets_where(user, Action.VIEW).filter(**lookup).exists():
                raise unknown_dataset(data["dataset"]) from None
            raise

    def claim_next(self, params: dict[str, Any], *, savepoint: bool = True) -> Claimed:
        project = params.get("project") or None
        return claim_with(self.request, params, project=project, savepoint=savepoint)


@extend_schema(parameters=[OpenApiParameter("claim_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class ClaimViewSet(CrunchAPI, viewsets.ViewSet):
    """Heartbeat and release of a held claim: its id, from the user that holds it."""

    lookup_field = "claim_id"

    @extend_schema(request=rs.ClaimRequestSerializer, responses={200: rs.RenewedSerializer})
    @action(detail=True, methods=["post"])
    def renew(self, request: Request, claim_id: str) -> Response:
        """Extend the lease; 409 when the claim is gone (the client must stop)."""
        params = rs.CLAIM_REQUEST.validate(request.data)
        claim = parse_claim_id(claim_id)
        expires = claims.renew_lease(
            claim, user=request.user, lease_seconds=params.get("lease_seconds")
        )
        return Response({"id": str(claim), "lease_expires": expires})

    @extend_schema(
        request=rs.RenewAllSerializer, responses={200: rs.RenewedAllSerializer},
        parameters=[OpenApiParameter("claim_id", location=OpenApiParameter.PATH, exclude=True)],
        operation_id="claims_renew_all",
    )  # fmt: skip
    @action(detail=False, methods=["post"], url_path="renew", url_name="renew-all")
    def renew_all(self, request: Request) -> Response:
        """Extend the lease of every claim named that the caller holds, in one statement;
        those not held (whatever the reason, alike) are listed as lost."""
        params = rs.RENEW_ALL.validate(request.data)
        # The leases and the loop's record: one write (on SQLite one lock). The datasets'
        # rows before the loop's, as a batch of statuses and claims locks them.
        with transaction.atomic():
            renewal = claims.renew_leases(
                params["claims"], user=request.user, allowed=may_process(request.user),
                lease_seconds=params.get("lease_seconds"),
            )  # fmt: skip
            if (client := params.get("client")) is not None:
                holder = client.get("holder") or default_holder(request)
                record_client(request, client, holder=holder)
        return Response({
            "renewed": [{"id": str(c), "lease_expires": e} for c, e in renewal.renewed],
            "lost": [str(c) for c in renewal.lost],
        })  # fmt: skip

    @extend_schema(request=rs.ReleaseSerializer, responses={200: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, claim_id: str) -> Response:
        """Give the dataset back to the queue now, without counting the attempt."""
        params = rs.ReleaseSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        given = params.validated_data
        dataset = claims.release(
            parse_claim_id(claim_id), user=request.user, note=given["note"],
            reason=given["reason"] or FailReason.CANCELLED, detail=given["reason_detail"],
        )  # fmt: skip
        return Response(s.DatasetSerializer(dataset).data)


def unknown_dataset(dataset: int | str) -> NotFound:
    """The answer for a dataset that does not exist, or that the user may not see: alike,
    so that no answer tells which."""
    return NotFound(run_fields.no_dataset(str(dataset)))


def parse_claim_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{value!r} is not a claim id.") from None
