"""API views: validate, call a service, serialize what it returns."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crunch.api import serializers as s
from crunch.choices import AttributeKind, DatasetState
from crunch.models import Attribute, Dataset, DatasetQuerySet, Item, Project, Status
from crunch.services import claims, retries, statuses
from crunch.services.stats import project_stats

RETRY_PERMS = ("crunch.change_dataset",)


def default_holder(request: Request) -> str:
    return f"{request.user.get_username()}@{request.META.get('REMOTE_ADDR', 'unknown')}"


def claim_response(claim: claims.Claim | None) -> Response:
    if claim is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(s.ClaimedDatasetSerializer(claim).data)


def claim_from_request(request: Request, *, project: Project | None) -> Response:
    params = s.ClaimRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    claim = claims.claim_next(
        project=project,
        holder=params.validated_data.get("holder") or default_holder(request),
        user=request.user,
        lease_seconds=params.validated_data.get("lease_seconds"),
        key=params.validated_data.get("key") or None,
    )
    return claim_response(claim)


def peek(queryset: DatasetQuerySet) -> Response:
    """django-crunch 0.1's read-only ``next``: which dataset would be handed out."""
    dataset = queryset.pending().claim_order().select_related("project").first()
    if dataset is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response({"project": dataset.project.slug, "dataset": dataset.slug})


class ProjectViewSet(viewsets.ModelViewSet[Project]):
    queryset = Project.objects.all()
    serializer_class = s.ProjectSerializer
    lookup_field = "slug"
    required_perms = ("crunch.add_project",)
    action_perms = {
        "update": ("crunch.change_project",),
        "partial_update": ("crunch.change_project",),
        "destroy": ("crunch.delete_project",),
        "next": ("crunch.change_dataset",),
        "retry": RETRY_PERMS,
    }

    @extend_schema(request=s.ClaimRequestSerializer, responses={200: s.ClaimedDatasetSerializer})
    @action(detail=True, methods=["get", "post"])
    def next(self, request: Request, slug: str) -> Response:
        """POST claims the project's next pending dataset (204 if none); GET only peeks."""
        project = self.get_object()
        if request.method == "GET":
            return peek(project.datasets.all())
        return claim_from_request(request, project=project)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, slug: str) -> Response:
        """Return every failed dataset of the project to pending."""
        count = retries.retry_failed(project=self.get_object())
        return Response({"retried": count})

    @action(detail=True, methods=["get"])
    def stats(self, request: Request, slug: str) -> Response:
        """Counts by state, throughput over the last hour and the estimated time to finish."""
        return Response(project_stats(self.get_object()).as_dict())


class DatasetViewSet(viewsets.ModelViewSet[Dataset]):
    serializer_class = s.DatasetSerializer
    lookup_field = "slug"
    required_perms = ("crunch.add_dataset",)
    action_perms = {
        "update": ("crunch.change_dataset",),
        "partial_update": ("crunch.change_dataset",),
        "destroy": ("crunch.delete_dataset",),
        "claim": ("crunch.change_dataset",),
        "retry": RETRY_PERMS,
    }

    def get_queryset(self) -> QuerySet[Dataset]:
        queryset = Dataset.objects.select_related("project")
        if project := self.request.query_params.get("project"):
            queryset = queryset.filter(project__slug=project)
        if state := self.request.query_params.get("state"):
            if state not in DatasetState.values:
                raise NotFound(
                    f"Unknown state {state!r}; use one of {', '.join(DatasetState.values)}."
                )
            queryset = queryset.filter(state=state)
        return queryset

    @extend_schema(request=s.ClaimRequestSerializer, responses={200: s.ClaimedDatasetSerializer})
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, slug: str) -> Response:
        """Claim this dataset for processing; 409 if another client holds it."""
        params = s.ClaimRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        claim = claims.claim_dataset(
            self.get_object(),
            holder=params.validated_data.get("holder") or default_holder(request),
            user=request.user,
            lease_seconds=params.validated_data.get("lease_seconds"),
            key=params.validated_data.get("key") or None,
        )
        return claim_response(claim)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, slug: str) -> Response:
        """Return this failed dataset to pending."""
        dataset = retries.retry(self.get_object())
        return Response(s.DatasetSerializer(dataset).data)


class ItemViewSet(viewsets.ModelViewSet[Item]):
    queryset = Item.objects.select_related("dataset", "parent")
    serializer_class = s.ItemSerializer
    lookup_field = "slug"
    required_perms = ("crunch.add_item",)


class StatusViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Status],
):
    """The status history. Posting a status moves the dataset's state."""

    serializer_class = s.StatusSerializer
    required_perms = ("crunch.add_status",)

    def get_queryset(self) -> QuerySet[Status]:
        queryset = Status.objects.select_related("dataset")
        if dataset := self.request.query_params.get("dataset"):
            key = "dataset_id" if dataset.isdigit() else "dataset__slug"
            queryset = queryset.filter(**{key: dataset})
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        diagnostics = {
            name: data.pop(name) for name in list(data) if name in statuses.DIAGNOSTIC_FIELDS
        }
        status_row, created = statuses.record_status(
            dataset=data["dataset"],
            stage=data["stage"],
            state=data["state"],
            note=data.get("note", ""),
            claim_id=data.get("claim_id"),
            key=data.get("key") or None,
            user=request.user,
            diagnostics=diagnostics,
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(status_row).data, status=code)


class AttributeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Attribute]):
    """Attributes of every type, filterable by ``?item=<slug>``."""

    serializer_class = s.AttributeSerializer
    required_perms = ("crunch.add_attribute",)

    def get_queryset(self) -> QuerySet[Attribute]:
        queryset = Attribute.objects.select_related("project", "dataset", "item")
        if self.kwargs.get("kind"):
            queryset = queryset.filter(kind=self.attribute_kind())
        if item := self.request.query_params.get("item"):
            owner = s.owner_by_slug(item)
            if owner is None:
                raise NotFound(f"No project, dataset or item has the slug {item!r}.")
            queryset = queryset.filter(**{type(owner).__name__.lower(): owner})
        return queryset

    def attribute_kind(self) -> AttributeKind:
        kind = self.kwargs.get("kind", "char").replace("-", "")
        aliases = {"integer": "int", "boolean": "bool", "text": "char", "string": "char"}
        try:
            return AttributeKind(aliases.get(kind, kind))
        except ValueError:
            raise NotFound(
                f"Unknown attribute type {self.kwargs.get('kind')!r}; "
                f"use one of {', '.join(AttributeKind.values)}."
            ) from None

    def get_serializer(self, *args: Any, **kwargs: Any) -> s.AttributeSerializer:
        kwargs.setdefault("context", self.get_serializer_context())
        return s.AttributeSerializer(*args, kind=self.attribute_kind(), **kwargs)


@extend_schema_view(
    list=extend_schema(operation_id="attributes_of_type_list"),
    create=extend_schema(operation_id="attributes_of_type_create"),
)
class TypedAttributeViewSet(mixins.CreateModelMixin, AttributeViewSet):
    """Typed attributes: ``POST api/attributes/<type>/`` with item, key and value."""


class NextView(APIView):
    """``POST api/next/`` claims the next pending dataset of any project; GET only peeks."""

    required_perms = ("crunch.change_dataset",)

    @extend_schema(request=s.ClaimRequestSerializer, responses={200: s.ClaimedDatasetSerializer})
    def post(self, request: Request) -> Response:
        return claim_from_request(request, project=None)

    @extend_schema(responses={200: s.PeekSerializer})
    def get(self, request: Request) -> Response:
        return peek(Dataset.objects.all())


@extend_schema(parameters=[OpenApiParameter("claim_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class ClaimViewSet(viewsets.ViewSet):
    """Heartbeat and release of a held claim, by its id."""

    required_perms = ("crunch.change_dataset",)
    lookup_field = "claim_id"

    @extend_schema(request=s.ClaimRequestSerializer, responses={200: s.ClaimSerializer})
    @action(detail=True, methods=["post"])
    def renew(self, request: Request, claim_id: str) -> Response:
        """Extend the lease; 409 when the claim is gone (the client must stop)."""
        params = s.ClaimRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        claim = parse_claim_id(claim_id)
        expires = claims.renew_lease(
            claim, lease_seconds=params.validated_data.get("lease_seconds")
        )
        return Response({"id": str(claim), "lease_expires": expires})

    @extend_schema(request=s.ReleaseSerializer, responses={200: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, claim_id: str) -> Response:
        """Give the dataset back to the queue now, without counting the attempt."""
        params = s.ReleaseSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        dataset = claims.release(parse_claim_id(claim_id), note=params.validated_data["note"])
        return Response(s.DatasetSerializer(dataset).data)


def parse_claim_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{value!r} is not a claim id.") from None
