"""Read-only queries behind the web pages.

Every function here runs a fixed number of queries whatever the number of datasets,
so a project of 100,000 datasets renders as fast as one of ten.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber

from crunch.access import Action, datasets_where, projects_where
from crunch.choices import DatasetState, FailReason, Stage
from crunch.constants import WORKFLOW_LOG, record_path
from crunch.models import Attribute, Dataset, Item, Project, Status
from crunch.services.files import FileNode as FileNode
from crunch.services.files import FileTree as FileTree
from crunch.services.files import default_storage as default_storage
from crunch.services.files import file_tree as file_tree
from crunch.services.files import open_dataset_file as open_dataset_file
from crunch.services.files import safe_relative_path as safe_relative_path
from crunch.services.result_filters import Selection
from crunch.services.timeline import StageRun as StageRun
from crunch.services.timeline import stage_runs as stage_runs

PAGE_SIZE = 50  # datasets per page of the table
FAILURE_GROUPS = 20  # distinct failure notes shown on a project page
FAILURE_EXAMPLES = 5  # datasets linked per failure note
CLIENTS_SHOWN = 50  # running datasets listed as "clients working now"
TIMELINE_LIMIT = 300  # statuses shown on a dataset page (newest kept)
ITEMS_SHOWN = 200
LOG_TAIL_BYTES = 16 * 1024  # bytes of the workflow log shown
NOTE_FILTER_CHARS = 200  # a failure-note filter matches notes starting with this many chars

SORTS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "-id": ("-id",),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "state": ("state", "id"),
    "-state": ("-state", "-id"),
    "finished": ("finished", "id"),
    "-finished": ("-finished", "-id"),
}
"""Sort keys accepted from the query string, each ending in ``id`` so pages are stable.

Each is answered from an index on (project, key), so a page is a short index walk
however large the project; a sort without such an index would sort every dataset.
"""


def visible_projects(user: Any) -> QuerySet[Project]:
    """The projects ``user`` may read; everyone else gets a 404 for the rest."""
    return projects_where(user or AnonymousUser(), Action.VIEW)


def visible_datasets(user: Any) -> QuerySet[Dataset]:
    return datasets_where(user or AnonymousUser(), Action.VIEW)


@dataclass(frozen=True, kw_only=True)
class FailureGroup:
    note: str
    count: int
    examples: list[Dataset]
    retrying: int = 0  # of ``count``, the datasets that wait for another attempt
    reason: str = FailReason.UNKNOWN
    """The failures' reason (those recorded before reasons existed: unknown)."""

    @property
    def headline(self) -> str:
        """The note's last non-empty line: where a traceback says what went wrong."""
        lines = [line for line in self.note.strip().splitlines() if line.strip()]
        return lines[-1] if lines else "(no note)"

    @property
    def filter_value(self) -> str:
        return self.note[:NOTE_FILTER_CHARS]


def failure_groups(project: Project, *, limit: int = FAILURE_GROUPS) -> list[FailureGroup]:
    """Failed datasets grouped by reason, then by note, largest group first, with a few
    examples each.

    A dataset that failed and waits for a retry is counted too (as ``retrying``): a
    failure is seen while its retries remain. Two queries: the grouped counts, then the
    examples of every group at once.
    """
    retrying = Q(state=DatasetState.PENDING, not_before__isnull=False)
    # The project in each branch: SQLite then reads each from the (project, state) index
    # (10 ms at 100,000 datasets), not the whole project (80 ms).
    failed = Dataset.objects.filter(
        Q(project=project, state=DatasetState.FAILED) | Q(retrying, project=project)
    ).order_by()
    counted = failed.values("last_reason", "note").annotate(
        n=Count("id"), retrying=Count("id", filter=retrying)
    )
    rows = list(counted.order_by("-n", "last_reason", "note")[:limit])
    if not rows:
        return []
    notes = sorted({row["note"] for row in rows})
    ranked = (
        failed.filter(note__in=notes)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("last_reason"), F("note")], order_by=F("id").asc()
            )
        )
        .filter(rank__lte=FAILURE_EXAMPLES)
        .only("id", "name", "slug", "note", "last_reason")
    )
    examples: dict[tuple[str, str], list[Dataset]] = {
        (row["last_reason"], row["note"]): [] for row in rows
    }
    for dataset in ranked:
        examples.get((dataset.last_reason, dataset.note), []).append(dataset)
    return [
        FailureGroup(
            note=row["note"],
            count=row["n"],
            examples=examples[(row["last_reason"], row["note"])],
            retrying=row["retrying"],
            reason=row["last_reason"] or FailReason.UNKNOWN,
        )
        for row in rows
    ]


def active_clients(project: Project, *, limit: int = CLIENTS_SHOWN) -> list[Dataset]:
    """Running datasets with their holder, stage, heartbeat, and the host and Slurm job
    (with its array task) of their last status."""
    latest = Status.objects.filter(dataset=OuterRef("pk")).order_by("-created", "-id")
    last_host = latest.exclude(hostname="").values("hostname")[:1]
    return list(
        Dataset.objects.filter(project=project, state=DatasetState.RUNNING)
        .order_by(F("heartbeat").desc(nulls_last=True), "id")
        .only(
            "id", "name", "slug", "stage", "claim_holder", "heartbeat", "claimed", "lease_expires"
        )
        .annotate(
            host=Subquery(last_host),
            job=Subquery(latest.values("slurm_job_id")[:1]),
            task=Subquery(latest.values("slurm_array_task_id")[:1]),
        )[:limit]
    )


@dataclass(frozen=True, kw_only=True)
class DatasetPage:
    """One page of a project's datasets table, and what the page links need to know."""

    datasets: list[Dataset]
    number: int
    has_next: bool
    total: int | None
    """Matching datasets, when known without counting (no search); else None."""
    page_size: int = PAGE_SIZE

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def num_pages(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.page_size))

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.page_size + 1 if self.datasets else 0

    @property
    def end_index(self) -> int:
        return (self.number - 1) * self.page_size + len(self.datasets)


def dataset_page(  # noqa: PLR0913 (keyword-only: the page's filters)
    project: Project,
    *,
    counts: dict[str, int],
    state: str = "",
    search: str = "",
    note: str = "",
    reason: str = "",
    sort: str = "id",
    number: int = 1,
    page_size: int = PAGE_SIZE,
    selection: Selection | None = None,
) -> DatasetPage:
    """One page of the table in one query: LIMIT/OFFSET, one row more to know if there is a next.

    ``counts`` (from ProjectStats) give the total when there is no search, so no page
    view ever runs ``COUNT(*)`` over the project's datasets. ``selection`` filters by
    results and, when it sorts by a result, replaces ``sort`` (crunch.services.result_page);
    its page is read by ``Selection.window``, in one query unless it reaches the datasets
    without the sort's key.
    """
    datasets: QuerySet[Dataset] = Dataset.objects.filter(project=project)
    if state in DatasetState.values:
        datasets = datasets.filter(state=state)
        total: int | None = counts.get(state, 0)
    else:
        total = sum(counts.values())
    if search:
        datasets = datasets.filter(name__icontains=search)
        total = None
    if note:
        datasets = datasets.filter(note__startswith=note[:NOTE_FILTER_CHARS])
        total = None
    if reason in FailReason.values:
        datasets = datasets.filter(last_reason=reason)
        total = None
    if selection is not None and selection.filters:
        total = None
    if selection is None or selection.sort is None:
        datasets = datasets.order_by(*SORTS.get(sort, SORTS["id"]))
    number = max(1, number)
    offset = (number - 1) * page_size
    datasets = datasets.only(
        "id",
        "name",
        "slug",
        "state",
        "stage",
        "attempts",
        "finished",
        "claim_holder",
        "note",
        "last_reason",
    )
    if selection is not None:
        rows = selection.window(datasets, offset, page_size + 1)
    else:
        rows = list(datasets[offset : offset + page_size + 1])
    return DatasetPage(
        datasets=rows[:page_size],
        number=number,
        has_next=len(rows) > page_size,
        total=total,
        page_size=page_size,
    )


def dataset_statuses(dataset: Dataset, *, limit: int = TIMELINE_LIMIT) -> list[Status]:
    """The dataset's newest statuses, oldest first."""
    newest = Status.objects.filter(dataset=dataset).order_by("-created", "-id")[:limit]
    return sorted(
        newest.only(
            "id",
            "stage",
            "state",
            "note",
            "created",
            "hostname",
            "claim_id",
            "slurm_job_id",
            "slurm_array_task_id",
            "slot",
            "reason",
            "reason_detail",
        ),
        key=lambda status: (status.created, status.id),
    )


def dataset_attributes(dataset: Dataset) -> list[Attribute]:
    return list(Attribute.objects.filter(dataset=dataset))


def dataset_items(dataset: Dataset, *, limit: int = ITEMS_SHOWN) -> list[Item]:
    return list(Item.objects.filter(dataset=dataset).select_related("parent")[:limit])


LOG_NAME = record_path(WORKFLOW_LOG)


def log_path(dataset: Dataset) -> str:
    return posixpath.join(dataset.base_file_path, LOG_NAME)


def workflow_log_tail(
    dataset: Dataset, *, max_bytes: int = LOG_TAIL_BYTES
) -> tuple[str, bool] | None:
    """The end of ``.crunch/workflow.log`` in storage and whether it was cut; None if absent.

    Opened as the file browser opens files: never through a link out of the folder.
    """
    opened = open_dataset_file(dataset, LOG_NAME)
    if opened is None:
        return None
    try:
        with opened[0] as handle:
            size = handle.size
            if size > max_bytes:
                handle.seek(size - max_bytes)
            data = handle.read(max_bytes)
    except (OSError, ValueError, NotImplementedError):
        return None
    text = data.decode("utf-8", errors="replace")
    cut = size > max_bytes
    if cut and "\n" in text:
        text = text.split("\n", 1)[1]
    return text, cut


WORKFLOW_CHANGES_SHOWN = 20


def workflow_changes(project: Project, *, limit: int = WORKFLOW_CHANGES_SHOWN) -> list[Any]:
    """The latest changes of the project's workflow, newest first."""
    return list(project.workflow_changes.select_related("user")[:limit])


@dataclass(frozen=True, kw_only=True)
class WorkflowRan:
    """What the dataset's latest run reported of its workflow: the SHA-256 of its text and
    the digest of the container image it ran in ("" when not reported)."""

    sha256: str = ""
    image_digest: str = ""

    def __bool__(self) -> bool:
        return bool(self.sha256 or self.image_digest)


def workflow_ran(dataset: Dataset) -> WorkflowRan:
    """The workflow's SHA-256 and image digest the dataset's latest run reported; one query."""
    found = (
        Status.objects.filter(dataset=dataset, stage=Stage.WORKFLOW)
        .exclude(workflow_sha256="", image_digest="")
        .order_by("-created", "-id")
        .values_list("workflow_sha256", "image_digest")
        .first()
    )
    return WorkflowRan(sha256=found[0], image_digest=found[1]) if found else WorkflowRan()
