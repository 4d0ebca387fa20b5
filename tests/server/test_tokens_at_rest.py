"""Token keys at rest: the database holds a digest, never a key; old keys survive the migration.

What an attacker holding a copy of the database sees: no row of any table holds a key, so
none can be replayed. What a worker sees: the key printed once still authenticates.
"""

from __future__ import annotations

import hashlib
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crunch.models import AccessToken
from crunch.services.accounts import create_token
from tests.factories import make_project, make_user


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def database_text() -> str:
    """Every value of every table, as text: what a stolen copy of the database holds."""
    values: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(values)


@pytest.mark.django_db
def test_crunch_token_prints_a_key_that_works_and_is_stored_nowhere() -> None:
    project = make_project(name="Scans")
    out = StringIO()
    call_command("crunch_token", "alice", "--role", "maintainer", "--project", "scans", stdout=out)
    key = out.getvalue().strip()

    assert len(key) == 40
    assert key not in database_text()
    token = AccessToken.objects.get(user__username="alice")
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.masked == f"{key[:4]}…"
    assert token.key is None  # loaded from the database: the key is not there
    assert api(key).get(f"/api/projects/{project.slug}/").status_code == 200
    assert api(token.digest).get(f"/api/projects/{project.slug}/").status_code == 401


@pytest.mark.django_db
def test_every_way_of_making_a_token_gives_its_key_once() -> None:
    user, factory_key = make_user("bob", role="viewer")
    token, service_key = create_token(user, name="ci")
    bulk = [AccessToken(user=user, name=f"bulk {n}") for n in range(3)]
    AccessToken.objects.bulk_create(bulk)
    keys = [factory_key, service_key, *[str(made.key) for made in bulk]]

    assert token.key == service_key
    assert len(set(keys)) == 5 and all(len(key) == 40 for key in keys)
    stored = database_text()
    assert not any(key in stored for key in keys)
    for key in keys:
        assert api(key).get("/api/projects/").status_code == 200


@pytest.mark.django_db
def test_a_saved_token_keeps_its_digest() -> None:
    """Editing a token (its name, in the admin) neither makes a new key nor loses the old."""
    user, key = make_user("carol", role="viewer")
    token = AccessToken.objects.get(user=user)
    token.name = "renamed"
    token.save()

    assert AccessToken.objects.get(pk=token.pk).digest == hashlib.sha256(key.encode()).hexdigest()
    assert api(key).get("/api/projects/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_migration_hashes_crunch_and_drf_keys_which_keep_working() -> None:
    """Back before the migration, tokens held their keys, some in DRF's authtoken table;
    after it, the same keys authenticate and no table holds any of them."""
    user, _ = make_user("dave", role="viewer")
    other, _ = make_user("erin", role="viewer")
    executor = MigrationExecutor(connection)
    target = ("crunch", "0008_hashed_tokens")
    before = list(executor.loader.graph.node_map[target].parents)
    latest = executor.loader.graph.leaf_nodes("crunch")
    crunch_key, drf_key = "c0ffee" * 6 + "abcd", "5eed" * 10
    try:
        executor.migrate([(parent.key[0], parent.key[1]) for parent in before])
        old_apps = executor.loader.project_state(
            [(parent.key[0], parent.key[1]) for parent in before]
        ).apps
        OldToken = old_apps.get_model("crunch", "AccessToken")
        OldToken.objects.all().delete()
        OldToken.objects.create(user_id=user.pk, key=crunch_key, name="from 0.2")
        Token.objects.create(user=other, key=drf_key)
        assert crunch_key in database_text() and drf_key in database_text()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    stored = database_text()
    assert crunch_key not in stored and drf_key not in stored
    assert not Token.objects.exists()
    migrated: Any = {token.user.username: token for token in AccessToken.objects.all()}
    assert set(migrated) == {"dave", "erin"}
    assert migrated["dave"].masked == "c0ff…" and migrated["erin"].name == "DRF authtoken"
    assert api(crunch_key).get("/api/projects/").status_code == 200
    assert api(drf_key).get("/api/projects/").status_code == 200


@pytest.mark.django_db
def test_the_admin_lists_tokens_by_their_prefix_and_stores_no_key(client: Any) -> None:
    admin = get_user_model().objects.create_superuser("root", password="x")
    _, key = make_user("frank", role="viewer")
    client.force_login(admin)

    listed = client.get("/admin/crunch/accesstoken/").content.decode()
    added = client.post(
        "/admin/crunch/accesstoken/add/", {"user": admin.pk, "name": "from the admin"}
    )

    assert f"{key[:4]}…" in listed and key not in listed
    assert added.status_code == 302
    made = AccessToken.objects.get(name="from the admin")
    assert len(made.digest) == 64 and len(made.prefix) == 4
    assert not re.search(rf"^{made.prefix}[0-9a-f]{{36}}$", database_text(), re.MULTILINE)
