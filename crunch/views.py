"""HTML pages: progress and browsing. Read-only; each view asks crunch.services.pages.

Every page also answers ``?live=1`` with only its changing parts, which
``crunch/static/crunch/live.js`` fetches every few seconds and swaps in place, so
figures stay current without a reload and the pages still work without JavaScript.
"""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from crunch.choices import DatasetState, FailReason
from crunch.conf import crunch_settings
from crunch.models import Dataset
from crunch.services import pages
from crunch.services.clients import live_slots
from crunch.services.stats import stats_for_projects

SEARCH_MAX_CHARS = 100
SORT_CHOICES = [
    ("id", "Oldest first"), ("-id", "Newest first"),
    ("name", "Name, A to Z"), ("-name", "Name, Z to A"),
    ("state", "State"), ("-state", "State, reversed"),
    ("finished", "Finished, earliest"), ("-finished", "Finished, latest"),
]  # fmt: skip
COLUMNS = [("name", "Name"), ("state", "State"), ("", "Attempts"), ("finished", "Finished")]
"""The table's first columns and their sort keys; "" is not sortable (no index)."""


MAX_PAGE = 10**6
"""Page numbers past this are cut to it: the row offset then fits every database."""


def _int(value: str | None, default: int) -> int:
    """A page number from the query string: ASCII digits only ('١٢' is not 12), capped."""
    if not value or not (value.isascii() and value.isdigit()):
        return default
    value = value.lstrip("0") or "0"
    if len(value) > len(str(MAX_PAGE)):  # also spares int() a 5,000-digit string
        return MAX_PAGE
    return min(MAX_PAGE, max(1, int(value)))


def _is_live(request: HttpRequest) -> bool:
    return request.GET.get("live") == "1"


@require_safe
def project_list(request: HttpRequest) -> HttpResponse:
    """Every visible project with its progress: three queries however many datasets."""
    projects = list(pages.visible_projects(request.user))
    stats = stats_for_projects([project.pk for project in projects])
    rows = [(project, stats[project.pk]) for project in projects]
    context = {
        "rows": rows,
        "states": DatasetState,
        "refresh_seconds": crunch_settings.PAGE_REFRESH_SECONDS,
    }
    template = (
        "crunch/parts/project_list_live.html" if _is_live(request) else "crunch/project_list.html"
    )
    return render(request, template, context)


@require_safe
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Progress, failures, clients at work and one page of the datasets table."""
    project = get_object_or_404(pages.visible_projects(request.user), slug=slug)
    stats = stats_for_projects([project.pk])[project.pk]
    state = request.GET.get("state", "")
    state = state if state in DatasetState.values else ""
    # No NUL: PostgreSQL refuses it in text, and no name or note holds one.
    search = request.GET.get("q", "").replace("\x00", "").strip()[:SEARCH_MAX_CHARS]
    note = request.GET.get("note", "").replace("\x00", "")[: pages.NOTE_FILTER_CHARS]
    reason = request.GET.get("reason", "")
    reason = reason if reason in FailReason.values else ""
    sort = request.GET.get("sort", "id")
    sort = sort if sort in pages.SORTS else "id"
    table = pages.dataset_page(
        project,
        counts=stats.counts,
        state=state,
        search=search,
        note=note,
        reason=reason,
        sort=sort,
        number=_int(request.GET.get("page"), 1),
    )
    context = {
        "project": project,
        "stats": stats,
        "states": DatasetState,
        # Counts already say when there is nothing to list: skip those queries.
        "failures": (
            pages.failure_groups(project)
            if stats.counts.get(DatasetState.FAILED) or stats.retrying
            else []
        ),
        "clients": pages.active_clients(project) if stats.counts.get(DatasetState.RUNNING) else [],
        "slots": live_slots(project) if stats.counts.get(DatasetState.RUNNING) else [],
        "table": table,
        "state": state,
        "search": search,
        "note": note,
        "reason": reason,
        "sort": sort,
        "sorts": SORT_CHOICES,
        "columns": COLUMNS,
        "refresh_seconds": crunch_settings.PAGE_REFRESH_SECONDS,
        "workflow_changes": pages.workflow_changes(project),
    }
    template = (
        "crunch/parts/project_live.html" if _is_live(request) else "crunch/project_detail.html"
    )
    return render(request, template, context)


def _visible_dataset(request: HttpRequest, slug: str) -> Dataset:
    """The dataset if its project is visible to this user, else 404 (never 403: no leak)."""
    if "\x00" in slug:  # no slug holds one, and PostgreSQL refuses it in a query
        raise Http404("No such dataset.")
    return get_object_or_404(
        pages.visible_datasets(request.user).select_related("project"), slug=slug
    )


@require_safe
def dataset_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """State, claim, timeline, failure note, log tail, files, attributes and items."""
    dataset = _visible_dataset(request, slug)
    statuses = pages.dataset_statuses(dataset)
    context = {
        "dataset": dataset,
        "project": dataset.project,
        "runs": pages.stage_runs(statuses),
        "refresh_seconds": crunch_settings.PAGE_REFRESH_SECONDS,
    }
    if _is_live(request):
        return render(request, "crunch/parts/dataset_live.html", context)
    context.update(
        attributes=pages.dataset_attributes(dataset),
        items=pages.dataset_items(dataset),
        log=pages.workflow_log_tail(dataset),
        tree=pages.file_tree(dataset),
        workflow_ran=pages.workflow_ran(dataset),
    )
    return render(request, "crunch/dataset_detail.html", context)


@require_safe
def dataset_file(request: HttpRequest, slug: str, path: str) -> FileResponse:
    """Stream one of the dataset's files from storage, which may be private.

    Always as an attachment: a stored HTML file must not run as a page of this site.
    """
    dataset = _visible_dataset(request, slug)
    opened = pages.open_dataset_file(dataset, path)
    if opened is None:
        raise Http404("No such file.")
    handle, filename = opened
    response = FileResponse(handle, as_attachment=True, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response
