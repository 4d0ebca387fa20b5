"""The permission matrix: every cell of permission_table.py against a live server.

One live server and one open database serve the whole module. pytest-django's
``live_server`` would flush every table after each test (0.4 s each on SQLite, far too
slow for this many cells), so each cell creates its own rows, and deletes them after.
"""

from __future__ import annotations

import datetime
import itertools
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from crunch import urls as crunch_urls
from crunch.choices import AttributeKind, DatasetState, Role
from crunch.models import (
    AccessToken,
    Attribute,
    Dataset,
    Item,
    Notification,
    Project,
    ProjectRole,
    Result,
    ResultKey,
    Status,
    default_base_file_path,
)
from tests.server.permission_storage import Bucket, bucket, place_files
from tests.server.permission_table import ROWS, Raw, Row, cells, markdown, may_view

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "permissions.md"
PRIVATE_SLUG = re.compile(r"secret-(?:x-)?\d+")
"""Every private project's slug (and so its datasets', items' ...) matches this."""
numbers = itertools.count()
User = get_user_model()


@dataclass(frozen=True)
class Server:
    url: str
    media: Path


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A live server over local storage in a temporary folder; the database emptied after."""
    media = tmp_path_factory.mktemp("media")
    storages = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    with django_db_blocker.unblock(), override_settings(STORAGES=storages, MEDIA_ROOT=str(media)):
        live = LiveServer("localhost")
        try:
            yield Server(url=live.url, media=media)
        finally:
            live.stop()
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def db() -> None:
    """pytest-django's ``db`` by name only, so that it creates the test database.

    Its real ``db`` would wrap each test in a transaction the server cannot see; the
    ``server`` fixture opens the database for the module instead.
    """


@dataclass
class Cell:
    """One cell's fresh data: the values its paths name, and the role's credentials."""

    role: str
    visibility: str
    values: dict[str, Any]
    user: Any = None
    token: str | None = None
    allowed: set[str] = field(default_factory=set)
    """The private slugs this role may see."""
    s3: Bucket | None = None
    """The bucket of a row marked (S3); local storage otherwise."""

    @property
    def target(self) -> str:
        return str(self.values["project"])


def dataset(project: Project, name: str, **fields: Any) -> Dataset:
    slug = f"{project.slug}:{name}"
    return Dataset(
        project=project, name=name, slug=slug, base_file_path=default_base_file_path(slug),
        **fields,
    )  # fmt: skip


def held(project: Project, name: str, user: Any, hours: int = 1) -> Dataset:
    """A running dataset whose claim ``user`` holds (its lease ending in ``hours``)."""
    now = timezone.now()
    return dataset(
        project, name, state=DatasetState.RUNNING, claim_id=uuid.uuid4(), claim_user=user,
        claim_holder=f"{user.username}@node", claimed=now, heartbeat=now,
        lease_expires=now + datetime.timedelta(hours=hours), attempts=1,
    )  # fmt: skip


def build(role: str, visibility: str, media: Path, s3: Bucket | None = None) -> Cell:
    """A public and a private project, each with a dataset holding a file; the role's user.

    Made in bulk, a few queries in all: there are many cells.
    """
    n = next(numbers)
    projects = [
        Project(name=f"Open {n}", slug=f"open-{n}", is_public=True),
        Project(name=f"Secret {n}", slug=f"secret-{n}"),
    ]
    if role == "other worker":
        projects.append(Project(name=f"Elsewhere {n}", slug=f"secret-x-{n}"))
    Project.objects.bulk_create(projects)
    open_project, secret = projects[:2]
    target = open_project if visibility == "public" else secret
    users = [User(username=f"holder-{n}")]
    if role != "anonymous":
        users.append(User(username=f"{role.replace(' ', '-')}-{n}", is_staff=role == "staff"))
    User.objects.bulk_create(users)
    holder, user = users[0], (users[1] if len(users) > 1 else None)
    tokens = [AccessToken(user=user, name="test") for user in users]
    AccessToken.objects.bulk_create(tokens)
    roles = [ProjectRole(project=target, user=holder, role=Role.WORKER)]
    if role in ("viewer", "worker", "maintainer"):
        roles.append(ProjectRole(project=target, user=user, role=Role(role)))
    elif role == "other worker":
        roles.append(ProjectRole(project=projects[2], user=user, role=Role.WORKER))
    elif role == "staff":
        user.user_permissions.add(*staff_permissions())
    ProjectRole.objects.bulk_create(roles)
    # The private dataset comes first in the queue: a peek that leaks would name it.
    files = [dataset(open_project, "ds"), dataset(secret, "ds", priority=5)]
    theirs = held(target, "theirs", holder)
    mine = held(target, "mine", user) if user else theirs
    lapsed = held(target, "lapsed", user or holder, hours=-1)
    failed = dataset(target, "failed", state=DatasetState.FAILED, attempts=3)
    Dataset.objects.bulk_create([*files, theirs, failed, lapsed, *([mine] if user else [])])
    upload = place_files(files, mine, media, s3)
    keys = [ResultKey(project=project, name="score", kind="float") for project in projects[:2]]
    ResultKey.objects.bulk_create(keys)
    Result.objects.bulk_create(
        Result(dataset=made, key=key, number=0.9) for made, key in zip(files, keys, strict=True)
    )
    pending = files[0] if target is open_project else files[1]
    item = Item.objects.create(dataset=pending, name="it", slug=f"{pending.slug}:it")
    attribute = Attribute.objects.create(
        kind=AttributeKind.TEXT, key="colour", text="blue", dataset=pending
    )
    status = Status.objects.create(
        dataset=theirs, stage=1, state=1, claim_id=theirs.claim_id, user=holder
    )
    hook = Notification.objects.create(
        project=target, kind="webhook", url="https://hooks.example.org/crunch"
    )
    cell = Cell(role, visibility, {}, user=user, token=tokens[1].key if user else None)
    if role == "other worker":
        cell.allowed.add(projects[2].slug)
    if visibility == "private" and may_view(role, visibility):
        cell.allowed.add(secret.slug)
    cell.values = {
        "project": target.slug, "project_id": target.pk, "dataset": pending.slug,
        "dataset_id": pending.pk, "item": item.slug, "attribute": attribute.pk,
        "status": status.pk, "failed": failed.slug, "mine": mine.slug,
        "my_claim": mine.claim_id if user else uuid.uuid4(), "theirs": theirs.slug,
        "their_claim": theirs.claim_id, "public": target.is_public, "lapsed": lapsed.slug,
        "lapsed_claim": lapsed.claim_id, "notification": hook.pk, **upload,
    }  # fmt: skip
    return cell


_staff_permissions: list[Permission] = []


def staff_permissions() -> list[Permission]:
    if not _staff_permissions:
        codenames = ["view_project", "view_dataset"]
        found = Permission.objects.filter(content_type__app_label="crunch", codename__in=codenames)
        _staff_permissions.extend(found)
    return _staff_permissions


@pytest.fixture
def cell(request: pytest.FixtureRequest, server: Server, db: None) -> Iterator[Cell]:
    role, visibility, storage = request.param
    s3 = bucket(request) if storage == "s3" else None
    with transaction.atomic():
        made = build(role, visibility, server.media, s3)
    made.s3 = s3
    if s3 is None:
        yield made
    else:
        with override_settings(STORAGES=s3.storages()):
            yield made
    empty_tables()


KEPT_TABLES = {"django_migrations", "django_content_type", "auth_permission", "auth_group"}


def empty_tables() -> None:
    """Delete every row the cell made, as ``flush`` does but without re-creating anything."""
    tables = set(connection.introspection.django_table_names(only_existing=True))
    statements = connection.ops.sql_flush(no_style(), sorted(tables - KEPT_TABLES))
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def fill(value: Any, values: Mapping[str, Any]) -> Any:
    """The body with each ``"{name}"`` replaced by the cell's value (keeping its type)."""
    if isinstance(value, Mapping):
        return {key: fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, str) and (name := re.fullmatch(r"\{(\w+)\}", value)):
        found = values[name.group(1)]
        return found if isinstance(found, bool | int) else str(found)
    return value


def session_cookies(user: Any) -> dict[str, str]:
    if user is None:
        return {}
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {name: client.cookies[name].value}


def send(server: Server, row: Row, cell: Cell) -> requests.Response:
    headers = {name: str(fill(value, cell.values)) for name, value in row.headers.items()}
    cookies = {}
    if row.session:
        cookies = session_cookies(cell.user)
    elif cell.token:
        headers["Authorization"] = f"Token {cell.token}"
    raw = row.body if isinstance(row.body, Raw) else None
    if raw is not None:
        headers["Content-Type"] = raw.content_type
    return requests.request(
        row.method,
        server.url + row.path.format(**cell.values),
        json=fill(row.body, cell.values) if row.body is not None and raw is None else None,
        data=raw.data if raw is not None else None,
        headers=headers,
        cookies=cookies,
        allow_redirects=False,
        timeout=30,
    )


def parameters() -> Iterator[Any]:
    for row, role, visibility in cells():
        marks = []
        if reason := row.xfail.get((role, visibility)):
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        yield pytest.param(
            row, (role, visibility, row.storage), marks=marks, id=f"{row.name}|{role}|{visibility}"
        )


@pytest.mark.parametrize(("row", "cell"), list(parameters()), indirect=["cell"])
def test_permission(server: Server, row: Row, cell: Cell) -> None:
    response = send(server, row, cell)
    where = f"{row.method} {row.path} as {cell.role} on the {cell.visibility} project"
    expected = row.expected(cell.role, cell.visibility)
    assert response.status_code == expected, f"{where}: {response.text[:300]!r}"
    if response.ok and cell.role != "staff":
        leaked = set(PRIVATE_SLUG.findall(response.text)) - cell.allowed
        assert not leaked, f"{where} shows private {sorted(leaked)!r}."
    if row.lists and response.status_code == 200 and may_view(cell.role, cell.visibility):
        assert cell.target in response.text, f"{where} does not list {cell.target!r}."
    if row.stores is not None:
        there = stored(server, cell, *row.stores)
        assert there == response.ok, f"{where}: {row.stores[1]!r} stored is {there}."


def stored(server: Server, cell: Cell, dataset: str, path: str) -> bool:
    """Whether the file ``path`` of the cell's dataset ``dataset`` (a name) is in storage."""
    folder = default_base_file_path(str(cell.values[dataset]))
    if cell.s3 is not None:
        return cell.s3.has(f"{folder}/{path}")
    return (server.media / folder / path).is_file()


def test_docs_permissions_md_is_the_table() -> None:
    assert DOCS.read_text() == markdown(), (
        "docs/permissions.md is out of date; run: python scripts/permissions_doc.py"
    )


def route_names(patterns: list[Any], prefix: str) -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            namespace = f"{prefix}{pattern.namespace}:" if pattern.namespace else prefix
            yield from route_names(pattern.url_patterns, namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield prefix + pattern.name


SAMPLE = {
    "project": "p", "project_id": 1, "dataset": "p:d", "dataset_id": 1, "item": "p:d:i",
    "attribute": 1, "status": 1, "failed": "p:f", "mine": "p:m", "theirs": "p:t",
    "my_claim": uuid.uuid4(), "their_claim": uuid.uuid4(), "public": True, "lapsed": "p:l",
    "lapsed_claim": uuid.uuid4(), "upload_id": "u", "etag": "e", "notification": 1,
}  # fmt: skip


def test_table_covers_every_url_of_crunch() -> None:
    """A URL added to crunch without a row in the table fails here."""
    covered = set()
    for row in ROWS:
        try:
            covered.add(resolve(row.path.format(**SAMPLE).split("?")[0]).view_name)
        except Resolver404:
            continue  # rows that show a URL does not exist
    names = set(route_names(crunch_urls.urlpatterns, "crunch:")) - {"crunch:api:api-root"}
    assert names - covered == set()
