"""Tokens keep only the SHA-256 of their key (crunch/tokens.py), and its first characters.

Existing keys are hashed in place, so every token keeps working. The keys of DRF's authtoken
app (``rest_framework.authtoken``, which crunch read before it had tokens of its own), when
its table exists, become crunch tokens the same way and their rows are deleted: no key is
left in clear. Going back cannot recover a key: every token gets a new one, unknown to all,
so tokens must be issued anew.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import migrations, models

import crunch.tokens
from crunch.db import migrating


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def aware(value: Any) -> datetime.datetime | None:
    """A timestamp read by raw SQL (naive UTC on SQLite), as the ORM would give it."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None and settings.USE_TZ:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value  # type: ignore[no-any-return]


def hash_keys(apps: Any, schema_editor: Any) -> None:
    AccessToken = apps.get_model("crunch", "AccessToken")
    for token in AccessToken.objects.all():
        token.digest, token.prefix = digest(token.key), token.key[:4]
        token.key = None
        token.save(update_fields=["digest", "prefix", "key"])
    move_authtoken_keys(AccessToken, schema_editor)
    checked_now(schema_editor)


def move_authtoken_keys(AccessToken: Any, schema_editor: Any) -> None:
    """DRF authtoken rows become crunch tokens, if that table exists; then they are deleted."""
    rows = migrating.authtoken_keys(schema_editor.connection)
    taken = set(AccessToken.objects.values_list("digest", flat=True))
    for key, user_id, created in rows:
        if digest(key) not in taken:
            AccessToken.objects.create(
                digest=digest(key), prefix=key[:4], user_id=user_id, created=aware(created),
                name="DRF authtoken",
            )  # fmt: skip
    migrating.delete_authtoken_keys(schema_editor.connection)


def checked_now(schema_editor: Any) -> None:
    """PostgreSQL checks the new rows' foreign keys at commit, and until then refuses to
    alter their table, as the next operations do: check them now (Django's
    ``check_constraints`` sets them IMMEDIATE, which checks those pending, then DEFERRED)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.connection.check_constraints()


def new_keys(apps: Any, schema_editor: Any) -> None:
    """Backwards: the old column needs a unique key per row; none of the old ones is known."""
    AccessToken = apps.get_model("crunch", "AccessToken")
    for token in AccessToken.objects.all():
        token.key = secrets.token_hex(20)
        token.save(update_fields=["key"])
    checked_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("crunch", "0007_scoped_keys"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accesstoken",
            name="key",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="accesstoken",
            name="digest",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="accesstoken",
            name="prefix",
            field=crunch.tokens.KeyDerivedField(
                blank=True, default="", editable=False, max_length=8
            ),
        ),
        migrations.RunPython(hash_keys, new_keys),
        migrations.RemoveField(model_name="accesstoken", name="key"),
        migrations.AlterField(
            model_name="accesstoken",
            name="digest",
            field=crunch.tokens.KeyDerivedField(editable=False, max_length=64, unique=True),
        ),
    ]
