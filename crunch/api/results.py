"""Results in the API: a project's table streamed as CSV or JSON Lines, and the dataset
list's filters, sort and ``results`` object.

Whoever may not view a project gets 404 before any filter is read, so a filter on a
private project's key answers exactly as one on a project that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from crunch.access import Action, projects_where
from crunch.api.authentication import TokenAuthentication
from crunch.api.permissions import ProjectAccess
from crunch.api.serializers import DatasetSerializer
from crunch.models import Dataset, Project, Result
from crunch.services.result_export import STREAMS, json_value
from crunch.services.result_filters import Selection, Windowed, columns_of
from crunch.services.results import schema, table

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
SHOWN = "shown_results"
"""The attribute the dataset list prefetches each dataset's results into."""

WHERE = OpenApiParameter(
    "where", OpenApiTypes.STR, many=True, explode=True,
    description="A filter on a result, e.g. score>0.9, site=north, name~abc (contains); "
    "operators = != < <= > >= ~. Repeat for several (all must hold). Needs `project` in "
    "the dataset list.",
)  # fmt: skip
SORT = OpenApiParameter(
    "sort", OpenApiTypes.STR,
    description="A result key, or slug; '-' before it for descending (e.g. -score). Datasets "
    "without the key come last; ties by id in the same direction.",
)  # fmt: skip
COLUMNS = OpenApiParameter(
    "columns", OpenApiTypes.STR,
    description="Result keys to show, comma-separated, in that order (default: all, by name).",
)  # fmt: skip
FORMAT = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=list(STREAMS),
    description="csv (default) or jsonl; see docs/how-it-works/results.md for the bytes.",
)  # fmt: skip
KINDS_HEADER = "Crunch-Result-Kinds"
KINDS = OpenApiParameter(
    KINDS_HEADER, OpenApiTypes.STR, location=OpenApiParameter.HEADER, response=[200],
    description="Each result column's kind, in column order: words:int,score:float,site:char,"
    "where:latlong (char, int, float, bool, date, datetime, latlong). A client types the "
    "rows, or writes a Parquet schema, before the first row.",
)  # fmt: skip
LIST_PARAMETERS = [
    OpenApiParameter("project", OpenApiTypes.STR, description="A project's slug."),
    OpenApiParameter("state", OpenApiTypes.STR, description="pending, running, completed, failed."),
    OpenApiParameter("search", OpenApiTypes.STR, description="Part of the dataset's name."),
    WHERE, SORT, COLUMNS,
]  # fmt: skip
"""The dataset list's query parameters."""


def visible_project(request: Request, slug: str) -> Project:
    """The project by slug if the user may view it; 404 alike whether missing or hidden."""
    project = projects_where(request.user, Action.VIEW).filter(slug=slug).first()
    if project is None:
        raise NotFound(f"No project has the slug {slug!r}.")
    return project


class ResultsView(APIView):
    """``GET api/projects/<slug>/results/``: the project's results, streamed."""

    # As crunch.api.views.CrunchAPI (which imports this module): set on the view, so a
    # host project's defaults cannot open it.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ProjectAccess]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        """Errors are JSON; ``format`` names the stream's format, read by ``get``."""
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="project_results",
        parameters=[FORMAT, WHERE, COLUMNS, SORT, KINDS],
        responses={
            (200, "text/csv"): OpenApiTypes.STR, (200, "application/jsonl"): OpenApiTypes.STR
        },
    )  # fmt: skip
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        """One row per dataset (slug, state, then its results), filtered and sorted."""
        project = visible_project(request, slug)
        kind = request.query_params.get("format") or "csv"
        if kind not in STREAMS:
            raise ValidationError(
                {"format": [f"Unknown format {kind[:40]!r}; use one of {', '.join(STREAMS)}."]}
            )
        chosen = table(
            project,
            where=request.query_params.getlist("where"),
            columns=request.query_params.get("columns"),
            sort=request.query_params.get("sort"),
        )
        response = StreamingHttpResponse(STREAMS[kind](chosen), content_type=MEDIA_TYPES[kind])
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-results.{kind}"'
        response[KINDS_HEADER] = ",".join(f"{key.name}:{key.kind}" for key in chosen.columns)
        return response


def selected(
    request: Request, queryset: QuerySet[Dataset]
) -> tuple[QuerySet[Dataset], Selection | None]:
    """The dataset list's ``where``, ``sort`` and ``columns`` read, and each row's results
    prefetched (those of ``columns``); the selection is None when none is asked.

    Filters and sorts need the project (its schema types them): 404 when the user may
    not view it, 400 on an unknown key or a value of the wrong kind.
    """
    params = request.query_params
    where, sort, columns = params.getlist("where"), params.get("sort"), params.get("columns")
    selection = None
    shown = Result.objects.select_related("key").order_by("key__name")
    if where or sort or columns:
        slug = params.get("project")
        if not slug:
            raise ValidationError(
                {"project": ["Filters, sorts and columns of results need ?project=<slug>."]}
            )
        keys = schema(visible_project(request, slug))
        selection = Selection.of(keys, where, sort)
        if columns:
            shown = shown.filter(key__in=columns_of(keys, columns))
    return queryset.prefetch_related(Prefetch("results", queryset=shown, to_attr=SHOWN)), selection


def filter_datasets(request: Request, queryset: QuerySet[Dataset]) -> QuerySet[Dataset]:
    """``queryset`` filtered and sorted as the request asks, with each row's results."""
    queryset, selection = selected(request, queryset)
    return queryset if selection is None else selection.apply(queryset)


def paged_datasets(request: Request, queryset: QuerySet[Dataset]) -> QuerySet[Dataset] | Windowed:
    """What the list's paginator reads: with a selection, pages read by ``Selection.window``
    (a page sorted by a result without sorting every dataset)."""
    queryset, selection = selected(request, queryset)
    return queryset if selection is None else Windowed(queryset, selection)


@extend_schema_field(OpenApiTypes.OBJECT)
class ResultsField(serializers.Field[Any, Any, Any, Any]):
    """A dataset's results, {key: value} (a lat-long as {"lat", "lon"}, times in UTC)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, dataset: Dataset) -> dict[str, Any]:
        rows = getattr(dataset, SHOWN, None)
        if rows is None:
            rows = Result.objects.filter(dataset=dataset).select_related("key")
        ordered = sorted(rows, key=lambda row: row.key.name)
        return {row.key.name: json_value(row.value) for row in ordered}


class DatasetResultsSerializer(DatasetSerializer):
    """A dataset with its results (those of ``columns``, when the list names them)."""

    results = ResultsField()

    class Meta(DatasetSerializer.Meta):
        fields = [*DatasetSerializer.Meta.fields, "results"]
