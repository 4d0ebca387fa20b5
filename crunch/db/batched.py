"""The named statements of queries.sql that act on many rows at once: a loop running many
datasets (``crunch loop --slots``) claims, reports and renews them in one call each.

Each runs one statement whatever the number of rows. Their lists of placeholders are
filled after the cached statement is composed, so that no list length is cached.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from crunch.choices import DatasetState
from crunch.db import statements
from crunch.db.queries import composed, numbered, placeholders
from crunch.db.rows import connection_for, execute, fetch, load_joined, loader, prepared
from crunch.db.statements import ADVANCED, ANYONE, Condition, Locked
from crunch.models import Dataset, Project


def filled(sql: str, **lists: str) -> str:
    """``sql`` with each ``{name}`` replaced by its list of placeholders (NULL when empty:
    ``IN ()`` is no SQL)."""
    for name, text in lists.items():
        sql = sql.replace("{" + name + "}", text or "NULL")
    return sql


def claim_many(
    values: Mapping[str, Any],
    *,
    claims: Sequence[tuple[uuid.UUID, str | None]],
    project: Project | str | None,
    allowed: Condition | None,
    now: datetime.datetime,
    memory: int | None = None,
    seconds: int | None = None,
) -> list[Dataset]:
    """Run ``claim_many``: up to ``len(claims)`` datasets claimed, the i-th in queue order
    with the i-th (claim id, key); ordered so. ``values`` as claim_next's (its claim id
    and key are not used), ``memory`` and ``seconds`` as claim_next's."""
    if not claims or (isinstance(project, Project) and project.paused):
        return []
    connection = connection_for(Dataset)
    allowed = allowed or ANYONE
    shared = {k: v for k, v in values.items() if k not in ("attempts", "claim_id", "claim_key")}
    params = prepared(Dataset, shared)
    params["ready"] = DatasetState.PENDING.value
    params["now"] = prepared(Dataset, {"not_before": now})["not_before"]
    params["count"] = len(claims)
    rows = []
    for n, (claim_id, key) in enumerate(claims):
        given = prepared(Dataset, {"claim_id": claim_id, "claim_key": key})
        params.update({f"n_{n}": n + 1, f"claim_id_{n}": given["claim_id"]})
        params[f"claim_key_{n}"] = given["claim_key"]
        rows.append(f"(%(n_{n})s, %(claim_id_{n})s, %(claim_key_{n})s)")
    queue = statements.queue_of(project, params)
    params.update(allowed.params, memory=memory, seconds=seconds)
    sql = composed(
        connection.alias, "claim_many", queue=queue, allowed=allowed.fragment, fits="fits_claim",
        **dict(allowed.slots),
    )  # fmt: skip
    names, found = fetch(connection, filled(sql, claims=", ".join(rows)), params)
    row_loader = loader(Dataset, connection.alias, tuple(names))
    order = {claim_id: n for n, (claim_id, _) in enumerate(claims)}
    claimed = [row_loader.load(row) for row in found]
    return sorted(claimed, key=lambda dataset: order[dataset.claim_id])


def projects(pks: Sequence[int]) -> dict[int, Project]:
    """Run ``projects_by_id``: {id: project} of the ids ``pks``."""
    if not pks:
        return {}
    connection = connection_for(Project)
    ids = sorted(set(pks))
    sql = filled(composed(connection.alias, "projects_by_id"), ids=placeholders("id", len(ids)))
    names, rows = fetch(connection, sql, numbered("id", ids))
    row_loader = loader(Project, connection.alias, tuple(names))
    found = [row_loader.load(row) for row in rows]
    return {project.pk: project for project in found}


def lock_datasets(
    datasets: Sequence[int | str], *, keys: Sequence[str], user_pk: Any, allowed: Condition | None
) -> list[Locked]:
    """Run ``lock_datasets`` on the datasets of ids (ints) and slugs ``datasets``, in the
    caller's transaction: those that exist, in the order of their ids."""
    connection = connection_for(Dataset)
    allowed = allowed or ANYONE
    ids = sorted({d for d in datasets if isinstance(d, int)})
    slugs = sorted({d for d in datasets if isinstance(d, str)})
    params: dict[str, Any] = {**allowed.params, **numbered("key", list(keys))}
    params |= numbered("id", ids) | numbered("slug", slugs)
    if not keys:
        seen = "unseen"
    elif user_pk is None:
        seen = "seen_anonymous"
    else:
        seen, params["seen_user"] = "seen_by_user", user_pk
    sql = composed(
        connection.alias, "lock_datasets", seen=seen, allowed=allowed.fragment,
        **dict(allowed.slots),
    )  # fmt: skip
    sql = filled(
        sql, ids=placeholders("id", len(ids)), slugs=placeholders("slug", len(slugs)),
        keys=placeholders("key", len(keys)),
    )  # fmt: skip
    names, rows = fetch(connection, sql, params)
    locked = []
    for row in rows:
        (dataset, owner), (seen_pk, may) = load_joined(
            connection.alias, names, row, Dataset, Project
        )
        assert isinstance(dataset, Dataset) and isinstance(owner, Project)
        dataset.project = owner
        locked.append(Locked(dataset=dataset, seen=seen_pk, allowed=bool(may)))
    return locked


def advance_datasets(datasets: Sequence[Dataset]) -> int:
    """Run ``advance_datasets``: save what statuses moved on ``datasets``; the rows changed."""
    if not datasets:
        return 0
    connection = connection_for(Dataset)
    meta: Any = Dataset._meta
    fields = [meta.pk, *(meta.get_field(name) for name in ADVANCED)]
    cast = connection.vendor == "postgresql"
    params: dict[str, Any] = {}
    rows = []
    for number, dataset in enumerate(datasets):
        values = prepared(Dataset, {f.attname: getattr(dataset, f.attname) for f in fields})
        places = []
        for index, (field, value) in enumerate(zip(fields, values.values(), strict=True)):
            name = f"v{number}_{index}"
            params[name] = value
            place = f"%({name})s"
            places.append(f"CAST({place} AS {field.cast_db_type(connection)})" if cast else place)
        rows.append("(" + ", ".join(places) + ")")
    sql = filled(composed(connection.alias, "advance_datasets"), rows=", ".join(rows))
    return execute(connection, sql, params)


def renew_claims(
    claim_ids: Sequence[uuid.UUID],
    *,
    user_pk: Any,
    allowed: Condition | None,
    now: datetime.datetime,
    lease_expires: datetime.datetime,
) -> set[uuid.UUID]:
    """Run ``renew_claims``: the claims of ``claim_ids`` renewed until ``lease_expires``."""
    if not claim_ids or user_pk is None:
        return set()
    connection = connection_for(Dataset)
    allowed = allowed or ANYONE
    ids = [prepared(Dataset, {"claim_id": claim_id})["claim_id"] for claim_id in claim_ids]
    times = prepared(Dataset, {"heartbeat": now, "lease_expires": lease_expires})
    params = {
        **numbered("claim", ids), **allowed.params, **times, "now": times["heartbeat"],
        "user": user_pk, "running": DatasetState.RUNNING.value,
    }  # fmt: skip
    sql = composed(
        connection.alias, "renew_claims", allowed=allowed.fragment, **dict(allowed.slots)
    )
    _, rows = fetch(connection, filled(sql, claims=placeholders("claim", len(ids))), params)
    # PostgreSQL answers UUIDs, SQLite their 32 hexadecimal digits.
    return {value if isinstance(value, uuid.UUID) else uuid.UUID(value) for (value,) in rows}
