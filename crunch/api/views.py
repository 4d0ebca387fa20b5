"""API views: validate, call a service, serialize what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crunch.access import (
    Action,
    datasets_where,
    grant,
    may,
    may_create_projects,
    may_process,
    project_of,
    projects_where,
)  # fmt: skip
from crunch.api import run_serializers as rs
from crunch.api import serializers as s
from crunch.api.authentication import TokenAuthentication
from crunch.api.bulk import BulkDatasetsSerializer, RegistrationSerializer
from crunch.api.exceptions import Conflict
from crunch.api.permissions import ProjectAccess, require
from crunch.api.results import (
    LIST_PARAMETERS,
    DatasetResultsSerializer,
    filter_datasets,
    paged_datasets,
)
from crunch.choices import AttributeKind, DatasetState, FailReason, Role
from crunch.models import Attribute, Dataset, Item, Project
from crunch.services import claims, clients, counted_claims, retries, workflows
from crunch.services.clients import ClientReport
from crunch.services.explain import explain
from crunch.services.overview import project_overview
from crunch.services.registration import InvalidRegistration, register_datasets
from crunch.services.stats import project_stats


class CrunchAPI:
    """What every crunch API view shares: its own authentication and one permission check.

    Set on the views rather than left to REST_FRAMEWORK so a host project's defaults
    cannot open them.
    """

    authentication_classes: Sequence[type[BaseAuthentication]] = [
        TokenAuthentication,
        SessionAuthentication,
    ]
    permission_classes: Sequence[Any] = [ProjectAccess]


def default_holder(request: Request) -> str:
    return f"{request.user.get_username()}@{request.META.get('REMOTE_ADDR', 'unknown')}"


Claimed = claims.Claim | list[claims.Claim] | None
"""What a claim request answers: one claim or none, or with ``count`` a list."""


def show_claimed(claimed: Claimed) -> Any:
    """The wire form of a claim request's answer (None: nothing to claim, no count)."""
    if isinstance(claimed, list):
        return {"claims": rs.CLAIMED.show_many(claimed)}
    return None if claimed is None else rs.CLAIMED.show(claimed)


def claim_response(claim: Claimed) -> Response:
    if claim is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(show_claimed(claim))


def claim_from_request(request: Request, *, project: str | None) -> Response:
    """Claim the next dataset (of ``project``, a slug) the user may process."""
    params = rs.CLAIM_REQUEST.validate(request.data)
    return claim_response(claim_with(request, params, project=project))


def claim_with(
    request: Request, params: dict[str, Any], *, project: str | None, savepoint: bool = True
) -> Claimed:
    """The claims a validated claim request asks for: of a ``next`` call or a status's
    ``next``; with ``count``, a list."""
    holder = params.get("holder") or default_holder(request)
    if (client := params.get("client")) is not None:
        record_client(request, client, holder=holder)
    common: dict[str, Any] = {
        "project": project, "allowed": may_process(request.user), "holder": holder,
        "user": request.user, "lease_seconds": params.get("lease_seconds"),
        "key": params.get("key") or None, "start": params.get("start"), "savepoint": savepoint,
        "memory": params.get("memory"), "seconds": params.get("seconds"),
    }  # fmt: skip
    if params.get("count") is None:
        return claims.claim_next(**common)
    return counted_claims.claim_many(count=params["count"], slots=params.get("slots"), **common)


def record_client(request: Request, client: dict[str, Any], *, holder: str) -> None:
    """Record the loop a claim or a renewal describes (crunch.services.clients)."""
    report = ClientReport(**{"holder": holder, **{k: v for k, v in client.items() if v != ""}})
    clients.seen(request.user, report)


def peek(queryset: QuerySet[Dataset]) -> Response:
    """django-crunch 0.1's read-only ``next``: which dataset would be handed out."""
    pending = queryset.filter(state=DatasetState.PENDING).order_by("-priority", "id")
    dataset = pending.select_related("project").first()
    if dataset is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response({"project": dataset.project.slug, "dataset": dataset.slug})


CLAIM_ANSWER = PolymorphicProxySerializer(
    "ClaimAnswer", [rs.ClaimedDatasetSerializer, rs.ClaimsSerializer], None
)
"""A claim's answer: the claimed dataset, or with ``count`` the list of claims."""

RETRIED = inline_serializer("Retried", {"retried": serializers.IntegerField()})
"""What a project's retry answers: how many failed datasets went back to pending."""


class ProjectViewSet(CrunchAPI, viewsets.ModelViewSet[Project]):
    serializer_class = s.ProjectDetailSerializer
    lookup_field = "slug"
    action_needs = {"next": Action.PROCESS, "retry": Action.RETRY, "register": Action.EDIT}

    def get_queryset(self) -> QuerySet[Project]:
        return projects_where(self.request.user, Action.VIEW)

    def perform_create(self, serializer: s.ProjectDetailSerializer) -> None:  # type: ignore[override]
        if not may_create_projects(self.request.user):
            raise PermissionDenied(
                "You may not create projects; ask for a site-wide maintainer role."
            )
        project = serializer.save()
        grant(Role.MAINTAINER, project=project, user=self.request.user)
        workflows.record_change(project, previous=None, user=self.request.user)

    def perform_update(self, serializer: s.ProjectDetailSerializer) -> None:  # type: ignore[override]
        assert serializer.instance is not None  # an update has its project
        previous, container = serializer.instance.workflow, serializer.instance.container
        project = serializer.save()
        workflows.record_change(
            project, previous=previous, previous_container=container, user=self.request.user
        )

    @extend_schema(methods=["GET"], request=None, responses={200: rs.PeekSerializer, 204: None})
    @extend_schema(
        methods=["POST"], request=rs.ClaimRequestSerializer,
        responses={200: CLAIM_ANSWER, 204: None},
    )  # fmt: skip
    @action(detail=True, methods=["get", "post"])
    def next(self, request: Request, slug: str) -> Response:
        """POST claims the project's next pending dataset (204 if none); GET only peeks."""
        if request.method == "GET":
            return peek(self.visible_project().datasets.all())
        # The project and the user's right to process it are checked inside the claim
        # query; only an empty answer asks which of them it was.
        response = claim_from_request(request, project=slug)
        if response.status_code == status.HTTP_204_NO_CONTENT or response.data == {"claims": []}:
            project = self.visible_project()
            require(request.user, Action.PROCESS, project)
            claims.refuse_paused(project)
        return response

    @extend_schema(request=BulkDatasetsSerializer(), responses={200: RegistrationSerializer})
    @action(detail=True, methods=["post"], url_path="datasets")
    def register(self, request: Request, slug: str) -> Response:
        """Register a list of datasets in one transaction; those that exist are left as they are."""
        project = self.get_object()
        entries = BulkDatasetsSerializer(data=request.data)
        entries.is_valid(raise_exception=True)
        try:
            registration = register_datasets(project, entries.validated_data, viewer=request.user)
        except InvalidRegistration as exc:
            raise ValidationError({"datasets": [str(exc)]}) from None
        except IntegrityError:
            # Another registration of the same names committed first; nothing of this
            # batch was written, and the import is idempotent.
            raise Conflict(
                "Another registration of some of these datasets ran at the same time; "
                "nothing of this batch was registered: run the import again."
            ) from None
        return Response({"created": registration.created, "existing": registration.existing})

    @extend_schema(request=None, responses={200: RETRIED})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, slug: str) -> Response:
        """Return every failed dataset of the project to pending."""
        count = retries.retry_failed(project=self.get_object())
        return Response({"retried": count})

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, slug: str) -> Response:
        """Counts by state, throughput over the last hour and the estimated time to finish."""
        return Response(project_stats(self.get_object()).as_dict())

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def overview(self, request: Request, slug: str) -> Response:
        """Stats, live clients by Slurm job and the largest failure groups: ``crunch status``."""
        return Response(project_overview(self.get_object()))

    def visible_project(self) -> Project:
        """The project by its slug if the user may see it, checked as a read."""
        project = self.get_queryset().filter(slug=self.kwargs["slug"]).first()
        if project is None:
            raise NotFound("No such object.")
        return project


@extend_schema_view(list=extend_schema(parameters=LIST_PARAMETERS))
class DatasetViewSet(CrunchAPI, viewsets.ModelViewSet[Dataset]):
    serializer_class = DatasetResultsSerializer
    lookup_field = "slug"
    action_needs = {"claim": Action.PROCESS, "retry": Action.RETRY, "release": Action.RETRY}

    def get_queryset(self) -> QuerySet[Dataset]:
        queryset = datasets_where(self.request.user, Action.VIEW).select_related("project")
        if project := self.request.query_params.get("project"):
            queryset = queryset.filter(project__slug=project)
        if state := self.request.query_params.get("state"):
            if state not in DatasetState.values:
                raise NotFound(
                    f"Unknown state {state!r}; use one of {', '.join(DatasetState.values)}."
                )
            queryset = queryset.filter(state=state)
        if reason := self.request.query_params.get("reason"):
            if reason not in FailReason.values:
                raise ValidationError(
                    {"reason": [f"Unknown reason {reason[:40]!r}; use one of "
                                f"{', '.join(FailReason.values)}."]}
                )  # fmt: skip
            queryset = queryset.filter(last_reason=reason)
        if search := self.request.query_params.get("search"):
            queryset = queryset.filter(name__icontains=search)
        if self.action == "retrieve":  # results: crunch.api.results
            queryset = filter_datasets(self.request, queryset)
        return queryset

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The datasets you may view, a page at a time: of a project, a state, a failure
        reason, a name search, and filtered and sorted by their results (where, sort)."""
        rows = paged_datasets(request, self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(rows)  # type: ignore[arg-type]
        if page is not None:
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        return Response(self.get_serializer(rows[:], many=True).data)

    def perform_create(self, serializer: s.DatasetSerializer) -> None:  # type: ignore[override]
        require(self.request.user, Action.EDIT, serializer.validated_data["project"])
        serializer.save()

    def perform_update(self, serializer: s.DatasetSerializer) -> None:  # type: ignore[override]
        if "project" in serializer.validated_data:
            require(self.request.user, Action.EDIT, serializer.validated_data["project"])
        serializer.save()

    @extend_schema(
        request=rs.ClaimRequestSerializer, responses={200: rs.ClaimedDatasetSerializer, 204: None}
    )
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, slug: str) -> Response:
        """Claim this dataset for processing; 409 if another client holds it."""
        params = rs.CLAIM_REQUEST.validate(request.data)
        claim = claims.claim_dataset(
            self.get_object(),
            holder=params.get("holder") or default_holder(request),
            user=request.user,
            lease_seconds=params.get("lease_seconds"),
            key=params.get("key") or None,
        )
        return claim_response(claim)

    @extend_schema(responses={200: rs.ExplanationSerializer})
    @action(detail=True, methods=["get"])
    def why(self, request: Request, slug: str) -> Response:
        """What holds this dataset where it is, and the command that would move it."""
        return Response(rs.ExplanationSerializer(explain(self.get_object())).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, slug: str) -> Response:
        """Return this failed dataset to pending."""
        dataset = retries.retry(self.get_object())
        return Response(s.DatasetSerializer(dataset).data)

    @extend_schema(request=None, responses={200: s.DatasetSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, slug: str) -> Response:
        """Return this running dataset to pending now (its client was killed or is stuck);
        409 when it is not running. The claim is dropped; its id is never shown."""
        dataset = claims.release_dataset(self.get_object(), user=request.user)
        return Response(s.DatasetSerializer(dataset).data)


class ItemViewSet(CrunchAPI, viewsets.ModelViewSet[Item]):
    serializer_class = s.ItemSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Item]:
        visible = datasets_where(self.request.user, Action.VIEW)
        return Item.objects.filter(dataset__in=visible).select_related("dataset__project", "parent")

    def perform_create(self, serializer: s.ItemSerializer) -> None:  # type: ignore[override]
        require(
            self.request.user, Action.EDIT, serializer.validated_data["parent"]["dataset"].project
        )
        serializer.save()


class AttributeViewSet(CrunchAPI, mixins.ListModelMixin, viewsets.GenericViewSet[Attribute]):
    """Attributes of every type, filterable by ``?item=<slug>``."""

    serializer_class = s.AttributeSerializer

    def get_queryset(self) -> QuerySet[Attribute]:
        user = self.request.user
        projects = projects_where(user, Action.VIEW)
        visible = datasets_where(user, Action.VIEW)
        queryset = Attribute.objects.filter(
            Q(project__in=projects) | Q(dataset__in=visible) | Q(item__dataset__in=visible)
        ).select_related("project", "dataset", "item")
        if self.kwargs.get("kind"):
            queryset = queryset.filter(kind=self.attribute_kind())
        if item := self.request.query_params.get("item"):
            owner = s.owner_by_slug(item)
            if owner is None or not may(user, Action.VIEW, project_of(owner)):
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

    def perform_create(self, serializer: s.AttributeSerializer) -> None:  # type: ignore[override]
        require(self.request.user, Action.EDIT, project_of(serializer.validated_data["item"]))
        serializer.save()


class NextView(CrunchAPI, APIView):
    """``POST api/next/`` claims the next pending dataset of any project; GET only peeks."""

    @extend_schema(request=rs.ClaimRequestSerializer, responses={200: CLAIM_ANSWER, 204: None})
    def post(self, request: Request) -> Response:
        return claim_from_request(request, project=None)

    @extend_schema(responses={200: rs.PeekSerializer, 204: None})
    def get(self, request: Request) -> Response:
        return peek(datasets_where(request.user, Action.VIEW))
