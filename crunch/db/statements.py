"""The named statements of queries.sql, each run by one function with typed arguments.

Building and compiling an ORM query costs about ten times running it on these small
statements (a dataset read back with its project: 0.6 ms against 0.06 ms on SQLite), and
they run a few times per request, thousands of times a minute. Values go through the
model fields' own preparation and conversion, as the ORM's would.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crunch.choices import DatasetState
from crunch.db.queries import composed, numbered, placeholders
from crunch.db.rows import connection_for, execute, fetch, load_joined, loader, prepared
from crunch.models import AccessToken, Dataset, Project, Status


@dataclass(frozen=True)
class Condition:
    """A condition of queries.sql on a dataset row, with its parameters: who may do what."""

    fragment: str
    """The name of its fragment in queries.sql."""
    params: Mapping[str, Any] = field(default_factory=dict)
    slots: tuple[tuple[str, str], ...] = ()
    """The fragment's own slots (a list of placeholders)."""


ANYONE = Condition("anyone")
NO_ONE = Condition("no_one")


def may_process(user_pk: Any, roles: Sequence[str]) -> Condition:
    """The user ``user_pk`` holds one of ``roles`` on the dataset's project (or on all)."""
    return Condition(
        "may_process",
        params={"process_user": user_pk, **numbered("process_role", list(roles))},
        slots=(("roles", placeholders("process_role", len(roles))),),
    )


def queue_of(project: Project | str | None, params: dict[str, Any]) -> str:
    """The claim queue's fragment for ``project`` (a Project, its slug, or None: any),
    its parameter added to ``params``."""
    if isinstance(project, Project):
        params["project_id"] = project.pk
        return "queue_of_project"
    if project is not None:
        params["project_slug"] = project
        return "queue_of_slug"
    return "queue_anywhere"


def claim_next(
    values: Mapping[str, Any],
    *,
    project: Project | str | None,
    allowed: Condition | None,
    now: datetime.datetime,
    memory: int | None = None,
    seconds: int | None = None,
) -> Dataset | None:
    """Run ``claim_next``: the dataset claimed, given its new ``values`` (field names; the
    attempts are counted up by the statement itself), None when none is ready. Only a
    dataset whose needs ``memory`` (bytes) and ``seconds`` meet is taken (``fits_claim``)."""
    if isinstance(project, Project) and project.paused:
        return None  # a paused project hands out nothing
    connection = connection_for(Dataset)
    allowed = allowed or ANYONE
    params = prepared(Dataset, {k: v for k, v in values.items() if k != "attempts"})
    params["ready"] = DatasetState.PENDING.value
    params["now"] = prepared(Dataset, {"not_before": now})["not_before"]
    queue = queue_of(project, params)
    params.update(allowed.params, memory=memory, seconds=seconds)
    sql = composed(
        connection.alias, "claim_next", queue=queue, allowed=allowed.fragment, fits="fits_claim",
        **dict(allowed.slots),
    )  # fmt: skip
    names, rows = fetch(connection, sql, params)
    if not rows:
        return None
    claimed: Dataset = loader(Dataset, connection.alias, tuple(names)).load(rows[0])
    return claimed


def project(pk: int) -> Project:
    """Run ``project``: the project ``pk`` (Project.DoesNotExist when there is none)."""
    connection = connection_for(Project)
    names, rows = fetch(connection, composed(connection.alias, "project"), {"id": pk})
    if not rows:
        raise Project.DoesNotExist(f"No project {pk!r}.")
    found: Project = loader(Project, connection.alias, tuple(names)).load(rows[0])
    return found


def dataset_with_project(pk: int) -> Dataset:
    """Run ``dataset_with_project``: the dataset ``pk``, its project loaded too."""
    connection = connection_for(Dataset)
    sql = composed(connection.alias, "dataset_with_project")
    names, rows = fetch(connection, sql, {"id": pk})
    if not rows:
        raise Dataset.DoesNotExist(f"No dataset {pk!r}.")
    (dataset, owner), _ = load_joined(connection.alias, names, rows[0], Dataset, Project)
    assert isinstance(dataset, Dataset) and isinstance(owner, Project)
    dataset.project = owner
    return dataset


@dataclass(frozen=True)
class Locked:
    """A dataset row locked for a status, with what its one query also answered."""

    dataset: Dataset
    seen: int | None
    """An earlier status of the user on this dataset with one of the keys: a retry."""
    allowed: bool


def lock_dataset(
    dataset: int | str, *, keys: Sequence[str], user_pk: Any, allowed: Condition | None
) -> Locked | None:
    """Run ``lock_dataset`` on the dataset of id (an int) or slug ``dataset``, in the
    caller's transaction; None when there is no such dataset."""
    connection = connection_for(Dataset)
    allowed = allowed or ANYONE
    params: dict[str, Any] = {"dataset": dataset, **allowed.params, **numbered("key", list(keys))}
    if not keys:
        seen = "unseen"
    elif user_pk is None:
        seen = "seen_anonymous"
    else:
        seen, params["seen_user"] = "seen_by_user", user_pk
    sql = composed(
        connection.alias, "lock_dataset", seen=seen, allowed=allowed.fragment,
        dataset="dataset_of_id" if isinstance(dataset, int) else "dataset_of_slug",
        keys=placeholders("key", len(keys)), **dict(allowed.slots),
    )  # fmt: skip
    names, rows = fetch(connection, sql, params)
    if not rows:
        return None
    (locked, owner), (seen_pk, may) = load_joined(
        connection.alias, names, rows[0], Dataset, Project
    )
    assert isinstance(locked, Dataset) and isinstance(owner, Project)
    locked.project = owner
    return Locked(dataset=locked, seen=seen_pk, allowed=bool(may))


ADVANCED = (
    "stage", "heartbeat", "state", "not_before", "note", "finished", "lease_expires",
    "claim_id", "claim_key", "lease_seconds", "claim_holder", "claim_user", "claimed",
    "attempts", "last_reason", "last_reason_detail", "needs_memory", "needs_seconds",
)  # fmt: skip
"""The fields ``advance_dataset`` saves, as its SET clause names their columns."""


def advance_dataset(dataset: Dataset) -> int:
    """Run ``advance_dataset``: save what a status moved on ``dataset``; the rows changed."""
    connection = connection_for(Dataset)
    meta: Any = Dataset._meta
    params = prepared(
        Dataset, {name: getattr(dataset, meta.get_field(name).attname) for name in ADVANCED}
    )
    params["id"] = dataset.pk
    return execute(connection, composed(connection.alias, "advance_dataset"), params)


STATUS_COLUMNS = (
    "dataset", "stage", "state", "note", "claim_id", "key", "user", "created",
    "workflow_sha256", "agent_user", "version", "revision", "system", "system_release",
    "system_version", "machine", "hostname", "ip_address", "mac_address", "slurm_job_id",
    "slurm_array_task_id", "memory_total", "memory_free", "disk_total", "disk_free",
    "image_digest", "slot", "reason", "reason_detail", "memory", "seconds",
)  # fmt: skip
"""The fields ``insert_statuses`` writes, in the order of its column list."""


def insert_statuses(statuses: Sequence[Status]) -> list[Status]:
    """Run ``insert_statuses``: the statuses given, now stored, with the ids the database
    gave them (as ``bulk_create`` leaves its objects). Each value is prepared by its field
    as ``save()`` prepares it."""
    connection = connection_for(Status)
    columns: list[Any] = [Status._meta.get_field(name) for name in STATUS_COLUMNS]
    params: dict[str, Any] = {}
    rows = []
    for number, status in enumerate(statuses):
        for index, column in enumerate(columns):
            value = column.pre_save(status, True)
            params[f"v{number}_{index}"] = column.get_db_prep_save(value, connection)
        rows.append("(" + ", ".join(f"%(v{number}_{i})s" for i in range(len(columns))) + ")")
    sql = composed(connection.alias, "insert_statuses", rows=", ".join(rows))
    _, ids = fetch(connection, sql, params)
    for status, (pk,) in zip(statuses, ids, strict=True):
        status.pk = pk
        status._state.adding = False
        status._state.db = connection.alias
    return list(statuses)


def token_with_user(digest: str) -> AccessToken | None:
    """Run ``token_with_user``: the token of ``digest``, its user loaded too."""
    from django.contrib.auth import get_user_model

    connection = connection_for(AccessToken)
    sql = composed(connection.alias, "token_with_user")
    names, rows = fetch(connection, sql, {"digest": digest})
    if not rows:
        return None
    user_model = get_user_model()
    (token, user), _ = load_joined(connection.alias, names, rows[0], AccessToken, user_model)
    assert isinstance(token, AccessToken)
    token.user = user  # type: ignore[assignment]
    return token
