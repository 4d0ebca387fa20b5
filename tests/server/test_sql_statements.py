"""Each hand-written statement of crunch/db/queries.sql against its ORM equivalent: the same
rows, or the same effect on the tables, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime
import importlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import checks
from django.db import connection, models, transaction
from django.utils import timezone

from crunch import checks as crunch_checks
from crunch.access import Action, datasets_where, grant, may_process
from crunch.choices import DatasetState, Role, Stage, State
from crunch.db import batched, bulk, migrating, queries, statements
from crunch.models import AccessToken, Attribute, Dataset, Project, Status
from crunch.services.claims import claim_values
from crunch.services.registration import ATTRIBUTE_FIELDS, DATASET_FIELDS
from crunch.tokens import digest
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db

TESTED = {
    "claim_next": "test_claim_next_takes_the_row_the_orm_picks",
    "queue_anywhere": "test_claim_next_takes_the_row_the_orm_picks",
    "fits_claim": "test_fits_claim_takes_the_datasets_the_orm_filter_takes",
    "queue_of_project": "test_claim_next_takes_the_row_the_orm_picks",
    "queue_of_slug": "test_claim_next_takes_the_row_the_orm_picks",
    "may_process": "test_may_process_allows_the_datasets_grants_allow",
    "anyone": "test_may_process_allows_the_datasets_grants_allow",
    "no_one": "test_may_process_allows_the_datasets_grants_allow",
    "project": "test_project_is_the_orm_s_project",
    "dataset_with_project": "test_dataset_with_project_is_select_related",
    "lock_dataset": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "dataset_of_id": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "dataset_of_slug": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "seen_by_user": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "seen_anonymous": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "unseen": "test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds",
    "advance_dataset": "test_advance_dataset_saves_as_save_update_fields",
    "insert_statuses": "test_insert_statuses_stores_what_bulk_create_stores",
    "token_with_user": "test_token_with_user_is_select_related",
    "claim_many": "test_claim_many_takes_the_rows_the_orm_picks",
    "projects_by_id": "test_projects_by_id_is_in_bulk",
    "lock_datasets": "test_lock_datasets_finds_the_datasets_and_keys_the_orm_finds",
    "advance_datasets": "test_advance_datasets_saves_each_as_save_update_fields",
    "renew_claims": "test_renew_claims_renews_what_the_orm_filter_updates",
    "authtoken_keys": "test_the_authtoken_statements_read_and_delete_what_the_orm_does",
    "create_result_statistics": "test_result_statistics_are_made_and_dropped_on_postgresql",
    "drop_result_statistics": "test_result_statistics_are_made_and_dropped_on_postgresql",
    "delete_authtoken_keys": "test_the_authtoken_statements_read_and_delete_what_the_orm_does",
}
"""Each statement of queries.sql and the test below that compares it with the ORM."""


def values_of(obj: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def table(model: type[models.Model], *, without: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    rows = model._default_manager.order_by("pk").values()
    return [{k: v for k, v in row.items() if k not in without} for row in rows]


def effect(change: Callable[[], Any], *models_: type[models.Model]) -> list[list[dict[str, Any]]]:
    """The tables of ``models_`` after ``change``, which is then undone."""
    with transaction.atomic():
        change()
        after = [table(model) for model in models_]
        transaction.set_rollback(True)
    return after


def test_every_statement_is_compared_with_the_orm():
    assert set(queries.statements()) == set(TESTED)
    assert set(TESTED.values()) <= set(globals())


def test_a_database_without_row_locks_runs_the_statements_without_for_update():
    sql = queries.composed(connection.alias, "lock_dataset", seen="unseen", allowed="anyone",
                           dataset="dataset_of_id", keys="")  # fmt: skip
    assert ("FOR UPDATE" in sql) is connection.features.has_select_for_update
    assert "{" not in sql


@pytest.fixture
def queue() -> dict[str, Any]:
    """Datasets of three projects, one paused, some not ready, of several priorities."""
    now = timezone.now()
    later = now + datetime.timedelta(hours=1)
    scans, other = make_project(name="Scans"), make_project(name="Other")
    paused = make_project(name="Paused", paused=True)
    for project, rows in (
        (scans, [(0, "pending", None), (5, "pending", later), (3, "pending", now),
                 (3, "failed", None)]),
        (other, [(4, "pending", None), (1, "pending", None), (9, "running", None)]),
        (paused, [(10, "pending", None)]),
    ):  # fmt: skip
        for n, (priority, state, not_before) in enumerate(rows):
            make_dataset(project, name=f"d{n}", priority=priority, state=state,
                         not_before=not_before)  # fmt: skip
    worker, _ = make_user("scanner", role="worker", projects=[scans])
    return {"scans": scans, "paused": paused, "worker": worker}


@pytest.mark.parametrize("where", ["anywhere", "project", "slug", "paused", "paused slug"])
@pytest.mark.parametrize("who", ["anyone", "worker of scans", "no one"])
def test_claim_next_takes_the_row_the_orm_picks(queue, where, who):
    project: Project | str | None = {
        "anywhere": None, "project": queue["scans"], "slug": "scans",
        "paused": queue["paused"], "paused slug": "paused",
    }[where]  # fmt: skip
    user = {"anyone": None, "worker of scans": queue["worker"], "no one": None}[who]
    allowed = {"anyone": None, "no one": statements.NO_ONE}.get(who, may_process(user))
    now = timezone.now()
    values = claim_values(holder="h", user=user, now=now, lease_seconds=60, key="k")

    ready = Dataset.objects.ready(now).filter(project__paused=False)
    if isinstance(project, Project):
        ready = ready.filter(project=project)
    elif project is not None:
        ready = ready.filter(project__slug=project)
    if who == "no one":
        ready = ready.none()
    elif user is not None:
        ready = ready.filter(pk__in=datasets_where(user, Action.PROCESS))
    pk = ready.order_by("-priority", "pk").values_list("pk", flat=True).first()
    expected = effect(lambda: Dataset.objects.filter(pk=pk).update(**values), Dataset)

    claimed: list[Dataset | None] = []
    taken = effect(
        lambda: claimed.append(
            statements.claim_next(values, project=project, allowed=allowed, now=now)
        ),
        Dataset,
    )
    assert taken == expected
    (dataset,) = claimed
    assert (dataset.pk if dataset else None) == pk
    if dataset is not None:
        (row,) = (row for row in taken[0] if row["id"] == pk)
        assert values_of(dataset) == row  # the row as stored, converted as the ORM would


GIB = 2**30


@pytest.mark.parametrize(
    ("memory", "seconds"),
    [(None, None), (4 * GIB, None), (None, 3600), (8 * GIB, 7200), (16 * GIB, 10**6), (0, 0)],
)
@pytest.mark.parametrize("statement", ["claim_next", "claim_many"])
def test_fits_claim_takes_the_datasets_the_orm_filter_takes(memory, seconds, statement):
    from django.db.models import Q

    project = make_project(name="Needs")
    for n, (needs_memory, needs_seconds) in enumerate(
        [(None, None), (4 * GIB, None), (8 * GIB + 1, None), (None, 3600), (None, 7201),
         (4 * GIB, 3600), (16 * GIB, 7200)]
    ):  # fmt: skip
        make_dataset(project, name=f"d{n}", needs_memory=needs_memory, needs_seconds=needs_seconds)
    # NULL announced: the SQL's "needs <= NULL" holds for no row, as "needs <= -1" here.
    fits = (
        Q(needs_memory__isnull=True) | Q(needs_memory__lte=-1 if memory is None else memory)
    ) & (Q(needs_seconds__isnull=True) | Q(needs_seconds__lte=-1 if seconds is None else seconds))
    expected = set(Dataset.objects.filter(fits).values_list("pk", flat=True))
    now = timezone.now()
    values = claim_values(holder="h", user=None, now=now, lease_seconds=60)
    taken: set[int] = set()
    with transaction.atomic():
        if statement == "claim_many":
            claims = [(uuid.uuid4(), None) for _ in range(10)]
            found = batched.claim_many(
                values, claims=claims, project=project, allowed=None, now=now, memory=memory,
                seconds=seconds,
            )  # fmt: skip
            taken = {dataset.pk for dataset in found}
        else:
            while dataset := statements.claim_next(
                {**values, "claim_id": uuid.uuid4()}, project=project, allowed=None, now=now,
                memory=memory, seconds=seconds,
            ):  # fmt: skip
                taken.add(dataset.pk)
        transaction.set_rollback(True)
    assert taken == expected


def test_may_process_allows_the_datasets_grants_allow():
    scans, other = make_project(name="Scans"), make_project(name="Other")
    datasets = [make_dataset(project, name=f"d{n}") for project in (scans, other) for n in (1, 2)]
    users = {
        "worker": make_user("worker", role="worker", projects=[scans])[0],
        "maintainer": make_user("maintainer", role="maintainer", projects=[other])[0],
        "viewer": make_user("viewer", role="viewer", projects=[scans])[0],
        "everywhere": make_user("everywhere", role="worker")[0],
        "nobody": make_user("nobody")[0],
        "member": make_user("member")[0],
        "superuser": get_user_model().objects.create_superuser("root", "r@example.org", "pw"),
    }
    crew = Group.objects.create(name="crew")
    users["member"].groups.add(crew)
    grant(Role.WORKER, project=other, group=crew)
    grant(Role.VIEWER, project=scans, group=crew)
    from django.contrib.auth.models import AnonymousUser

    for name, member in [*users.items(), ("anonymous", None)]:
        user = AnonymousUser() if member is None else member
        expected = set(datasets_where(user, Action.PROCESS).values_list("pk", flat=True))
        allowed = {
            d.pk
            for d in datasets
            if (found := statements.lock_dataset(
                d.pk, keys=[], user_pk=None, allowed=may_process(user)
            )) and found.allowed
        }  # fmt: skip
        assert allowed == expected, name


def test_project_is_the_orm_s_project():
    project = make_project(name="Scans", retry_delay=30, paused=True)
    assert values_of(statements.project(project.pk)) == values_of(
        Project.objects.get(pk=project.pk)
    )
    with pytest.raises(Project.DoesNotExist):
        statements.project(project.pk + 1)


def test_dataset_with_project_is_select_related():
    user, _ = make_user("worker")
    dataset = make_dataset(
        name="Scan", state=DatasetState.RUNNING, claim_id=uuid.uuid4(), claim_user=user,
        lease_expires=timezone.now(), stage=Stage.SETUP,
    )  # fmt: skip
    found = statements.dataset_with_project(dataset.pk)
    orm = Dataset.objects.select_related("project").get(pk=dataset.pk)
    assert values_of(found) == values_of(orm)
    assert values_of(found.project) == values_of(orm.project)
    with pytest.raises(Dataset.DoesNotExist):
        statements.dataset_with_project(dataset.pk + 1)


def test_lock_dataset_finds_the_dataset_and_the_key_the_orm_finds():
    user, _ = make_user("worker")
    dataset, neighbour = make_dataset(name="Scan"), make_dataset(name="Next")
    for owner, on, key in [(user, dataset, "a"), (None, dataset, "b"), (user, neighbour, "c")]:
        Status.objects.create(dataset=on, stage=Stage.SETUP, state=State.START, key=key,
                              user=owner)  # fmt: skip
    orm = Dataset.objects.select_related("project").get(pk=dataset.pk)
    for which in (dataset.pk, dataset.slug):
        for owner in (user, None):
            for keys in ([], ["a"], ["b"], ["c"], ["a", "b", "z"]):
                with transaction.atomic():
                    found = statements.lock_dataset(
                        which, keys=keys, user_pk=getattr(owner, "pk", None), allowed=None
                    )
                seen = Status.objects.filter(dataset=dataset, user=owner, key__in=keys)
                assert found is not None and found.allowed
                assert found.seen == seen.values_list("pk", flat=True).first(), (owner, keys)
                assert values_of(found.dataset) == values_of(orm)
                assert values_of(found.dataset.project) == values_of(orm.project)
    assert statements.lock_dataset("scans:none", keys=[], user_pk=None, allowed=None) is None
    assert statements.lock_dataset(neighbour.pk + 1, keys=[], user_pk=None, allowed=None) is None


def test_advance_dataset_saves_as_save_update_fields():
    user, _ = make_user("worker")
    make_dataset(name="Other")
    dataset = make_dataset(name="Scan", state=DatasetState.RUNNING, claim_id=uuid.uuid4(),
                           claim_user=user, claim_key="k", lease_seconds=60)  # fmt: skip
    now = timezone.now()
    moved = {
        "stage": Stage.UPLOAD, "heartbeat": now, "state": DatasetState.COMPLETED,
        "not_before": now, "note": "done", "finished": now, "lease_expires": None,
        "claim_id": None, "claim_key": None, "lease_seconds": None, "claim_holder": "",
        "claim_user": None, "claimed": None, "priority": 99, "name": "not saved",
    }  # fmt: skip
    for field, value in moved.items():
        setattr(dataset, field, value)
    by_orm = effect(lambda: dataset.save(update_fields=statements.ADVANCED), Dataset)
    assert effect(lambda: statements.advance_dataset(dataset), Dataset) == by_orm


def test_insert_statuses_stores_what_bulk_create_stores():
    user, _ = make_user("worker")
    dataset = make_dataset(name="Scan")
    now = timezone.now()

    def made() -> list[Status]:
        return [
            Status(dataset=dataset, stage=Stage.SETUP, state=State.START, claim_id=uuid.uuid4(),
                   key="k1", user=user, created=now, hostname="node", memory_total=2**40),
            Status(dataset=dataset, stage=Stage.SETUP, state=State.FAIL, note="no", created=now),
        ]  # fmt: skip

    ids = uuid.uuid4()
    statuses = made()
    statuses[0].claim_id = ids
    by_orm = made()
    by_orm[0].claim_id = ids
    orm = effect(lambda: Status.objects.bulk_create(by_orm), Status)
    stored: list[Status] = []
    ours = effect(lambda: stored.extend(statements.insert_statuses(statuses)), Status)
    without_ids = [[{k: v for k, v in row.items() if k != "id"} for row in rows] for rows in ours]
    assert without_ids == [[{k: v for k, v in r.items() if k != "id"} for r in orm[0]]]
    assert [values_of(status) for status in stored] == ours[0]
    assert not stored[0]._state.adding and stored[0].dataset is dataset and stored[0].user is user


def test_token_with_user_is_select_related():
    _user, key = make_user("worker")
    found = statements.token_with_user(digest(key))
    orm = AccessToken.objects.select_related("user").get(digest=digest(key))
    assert found is not None
    assert values_of(found) == values_of(orm)
    assert values_of(found.user) == values_of(orm.user)
    assert statements.token_with_user(digest("no such key")) is None


def test_the_authtoken_statements_read_and_delete_what_the_orm_does():
    from rest_framework.authtoken.models import Token

    migration = importlib.import_module("crunch.migrations.0008_hashed_tokens")
    for name in ("alice", "bob"):
        Token.objects.create(user=make_user(name)[0])
    rows = [
        (key, user_id, migration.aware(created))
        for key, user_id, created in migrating.authtoken_keys(connection)
    ]
    assert sorted(rows) == sorted(Token.objects.values_list("key", "user_id", "created"))
    by_orm = effect(lambda: Token.objects.all().delete(), Token)
    assert effect(lambda: migrating.delete_authtoken_keys(connection), Token) == by_orm == [[]]


def test_result_statistics_are_made_and_dropped_on_postgresql():
    """PostgreSQL keeps the (key, value) frequencies of text and boolean results that the
    planner needs; SQLite, which has no such statistics, is left as it is."""

    def made() -> set[str]:
        if connection.vendor != "postgresql":
            return set()
        with connection.cursor() as cursor:
            cursor.execute("SELECT stxname FROM pg_statistic_ext")
            return {name for (name,) in cursor.fetchall()}

    expected = {"crunch_result_key_text", "crunch_result_key_flag"}
    if connection.vendor == "postgresql":
        assert made() >= expected  # by migration 0015
    migrating.drop_result_statistics(connection)
    assert not made() & expected
    migrating.create_result_statistics(connection)
    assert made() >= expected if connection.vendor == "postgresql" else made() == set()


def test_bulk_insert_rows_stores_what_bulk_create_stores():
    project = make_project(name="Scans")
    rows = [("A", "scans:a", "", "", 2, "crunch/scans/a"), ("B", "scans:b", "d", "x", 0, "b")]
    kept = ("id", "created", "updated")

    def orm() -> None:
        Dataset.objects.bulk_create(
            Dataset(project=project, **dict(zip(DATASET_FIELDS, row, strict=True))) for row in rows
        )

    def ours() -> None:
        bulk.insert_rows(Dataset, {"project": project}, DATASET_FIELDS, rows)

    def strip(tables: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        return [[{k: v for k, v in row.items() if k not in kept} for row in t] for t in tables]

    assert strip(effect(ours, Dataset)) == strip(effect(orm, Dataset))
    dataset = make_dataset(project, name="With attributes")
    row = (dataset.pk, "int", "size", "", 7, None, None, None, None, None)
    named = dict(zip(ATTRIBUTE_FIELDS, row, strict=True))
    named["dataset_id"] = named.pop("dataset")
    by_orm = effect(lambda: Attribute.objects.bulk_create([Attribute(**named)]), Attribute)
    ours_ = effect(lambda: bulk.insert_rows(Attribute, {}, ATTRIBUTE_FIELDS, [row]), Attribute)
    assert strip(ours_) == strip(by_orm)
    assert bulk.parameter_limit(Dataset) >= 900


def test_the_check_names_the_supported_databases(monkeypatch):
    assert crunch_checks.check_databases() == []
    monkeypatch.setattr(connection, "vendor", "mysql")
    monkeypatch.setattr(connection, "display_name", "MySQL")
    (error,) = crunch_checks.check_databases()
    assert isinstance(error, checks.Error) and error.id == "crunch.E002"
    assert (
        error.msg == "The database 'default' is MySQL; crunch supports PostgreSQL and SQLite only."
    )


@pytest.mark.parametrize("count", [1, 3, 10])
@pytest.mark.parametrize("where", ["anywhere", "project", "slug", "paused"])
@pytest.mark.parametrize("who", ["anyone", "worker of scans", "no one"])
def test_claim_many_takes_the_rows_the_orm_picks(queue, count, where, who):
    project: Project | str | None = {
        "anywhere": None, "project": queue["scans"], "slug": "scans", "paused": queue["paused"],
    }[where]  # fmt: skip
    user = {"anyone": None, "worker of scans": queue["worker"], "no one": None}[who]
    allowed = {"anyone": None, "no one": statements.NO_ONE}.get(who, may_process(user))
    now = timezone.now()
    values = claim_values(holder="h", user=user, now=now, lease_seconds=60)
    wanted = [(uuid.uuid4(), f"k:{n}") for n in range(count)]

    ready = Dataset.objects.ready(now).filter(project__paused=False)
    if isinstance(project, Project):
        ready = ready.filter(project=project)
    elif project is not None:
        ready = ready.filter(project__slug=project)
    if who == "no one":
        ready = ready.none()
    elif user is not None:
        ready = ready.filter(pk__in=datasets_where(user, Action.PROCESS))
    pks = list(ready.order_by("-priority", "pk").values_list("pk", flat=True)[:count])

    def by_orm() -> None:
        for pk, (claim_id, key) in zip(pks, wanted, strict=False):
            Dataset.objects.filter(pk=pk).update(
                **values | {"claim_id": claim_id, "claim_key": key}
            )

    expected = effect(by_orm, Dataset)
    claimed: list[Dataset] = []
    taken = effect(
        lambda: claimed.extend(
            batched.claim_many(values, claims=wanted, project=project, allowed=allowed, now=now)
        ),
        Dataset,
    )
    assert taken == expected
    assert [dataset.pk for dataset in claimed] == pks
    rows = {row["id"]: row for row in taken[0]}
    assert [values_of(dataset) for dataset in claimed] == [rows[pk] for pk in pks]


def test_projects_by_id_is_in_bulk():
    projects = [make_project(name=f"P{n}", paused=n == 1) for n in range(3)]
    pks = [projects[2].pk, projects[0].pk, projects[2].pk]
    found = batched.projects(pks)
    orm = Project.objects.in_bulk(pks)
    assert {pk: values_of(p) for pk, p in found.items()} == {
        pk: values_of(p) for pk, p in orm.items()
    }
    assert batched.projects([]) == {}


def test_lock_datasets_finds_the_datasets_and_keys_the_orm_finds():
    user, _ = make_user("worker")
    scans = make_project(name="Scans")
    datasets = [make_dataset(scans, name=f"d{n}") for n in range(4)]
    for owner, on, key in [(user, datasets[0], "a"), (None, datasets[1], "b"),
                           (user, datasets[2], "c")]:  # fmt: skip
        Status.objects.create(dataset=on, stage=Stage.SETUP, state=State.START, key=key,
                              user=owner)  # fmt: skip
    named = [datasets[3].pk, datasets[0].slug, datasets[2].pk, "scans:none", 10**9]
    for owner in (user, None):
        for keys in ([], ["a"], ["b", "c"], ["z"]):
            with transaction.atomic():
                found = batched.lock_datasets(
                    named, keys=keys, user_pk=getattr(owner, "pk", None), allowed=None
                )
            orm = Dataset.objects.select_related("project").filter(
                pk__in=[datasets[3].pk, datasets[0].pk, datasets[2].pk]
            )
            assert [values_of(f.dataset) for f in found] == [values_of(d) for d in orm]
            assert [values_of(f.dataset.project) for f in found] == [
                values_of(d.project) for d in orm
            ]
            for f in found:
                seen = Status.objects.filter(dataset=f.dataset, user=owner, key__in=keys)
                assert f.seen == seen.values_list("pk", flat=True).first(), (owner, keys)
                assert f.allowed
    assert batched.lock_datasets([], keys=[], user_pk=None, allowed=None) == []


def test_advance_datasets_saves_each_as_save_update_fields():
    user, _ = make_user("worker")
    make_dataset(name="Other")
    now = timezone.now()
    running = [
        make_dataset(name=f"Scan {n}", state=DatasetState.RUNNING, claim_id=uuid.uuid4(),
                     claim_user=user, claim_key=f"k{n}", lease_seconds=60, stage=Stage.SETUP)
        for n in range(3)
    ]  # fmt: skip
    moves: list[dict[str, Any]] = [
        {"stage": Stage.UPLOAD, "heartbeat": now, "state": DatasetState.COMPLETED,
         "finished": now, "lease_expires": None, "claim_id": None, "claim_key": None,
         "lease_seconds": None, "claim_holder": "", "claim_user": None, "claimed": None,
         "note": "", "priority": 99},
        {"stage": Stage.WORKFLOW, "heartbeat": now, "lease_expires": now, "name": "not saved"},
        {"stage": Stage.SETUP, "state": DatasetState.PENDING, "not_before": now, "note": "no",
         "finished": now, "claim_id": None, "claim_user": None},
    ]  # fmt: skip
    for dataset, moved in zip(running, moves, strict=True):
        for field, value in moved.items():
            setattr(dataset, field, value)

    def by_orm() -> None:
        for dataset in running:
            dataset.save(update_fields=statements.ADVANCED)

    expected = effect(by_orm, Dataset)
    assert effect(lambda: batched.advance_datasets(running), Dataset) == expected
    assert batched.advance_datasets([]) == 0


def test_renew_claims_renews_what_the_orm_filter_updates():
    user, _ = make_user("worker", role="worker")
    other, _ = make_user("other", role="worker")
    now = timezone.now()
    later = now + datetime.timedelta(minutes=5)
    rows = [(user, "running"), (user, "running"), (other, "running"), (user, "completed")]
    claims = []
    for n, (owner, state) in enumerate(rows):
        claim_id = uuid.uuid4()
        make_dataset(name=f"d{n}", state=state, claim_id=claim_id, claim_user=owner)
        claims.append(claim_id)
    asked = [*claims, uuid.uuid4()]
    held = Dataset.objects.filter(claim_id__in=asked, state="running", claim_user=user)
    mine = set(held.values_list("claim_id", flat=True))
    expected = effect(lambda: held.update(heartbeat=now, lease_expires=later), Dataset)
    renewed: set[uuid.UUID] = set()
    taken = effect(
        lambda: renewed.update(batched.renew_claims(
            asked, user_pk=user.pk, allowed=may_process(user), now=now, lease_expires=later
        )),
        Dataset,
    )  # fmt: skip
    assert taken == expected and renewed == mine == set(claims[:2])
    none = batched.renew_claims(
        asked, user_pk=user.pk, allowed=statements.NO_ONE, now=now, lease_expires=later
    )
    assert none == set()
