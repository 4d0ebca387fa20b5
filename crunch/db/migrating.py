"""The statements of migrations, which run on the migration's own connection.

They import no model: a migration sees the models as they were at its point in history.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from crunch.db.queries import query
from crunch.db.rows import execute, fetch

AUTHTOKEN_TABLE = "authtoken_token"


def authtoken_keys(connection: BaseDatabaseWrapper) -> list[tuple[Any, ...]]:
    """Run ``authtoken_keys``: (key, user id, created) of each DRF authtoken row; none when
    its table does not exist."""
    if AUTHTOKEN_TABLE not in connection.introspection.table_names():
        return []
    return fetch(connection, query(connection.alias, "authtoken_keys"), {})[1]


def delete_authtoken_keys(connection: BaseDatabaseWrapper) -> None:
    """Run ``delete_authtoken_keys``, if the table exists."""
    if AUTHTOKEN_TABLE in connection.introspection.table_names():
        execute(connection, query(connection.alias, "delete_authtoken_keys"), {})


def create_result_statistics(connection: BaseDatabaseWrapper) -> None:
    """Run ``create_result_statistics`` on PostgreSQL (SQLite has no such statistics)."""
    _on_postgresql(connection, "create_result_statistics")


def drop_result_statistics(connection: BaseDatabaseWrapper) -> None:
    """Run ``drop_result_statistics`` on PostgreSQL."""
    _on_postgresql(connection, "drop_result_statistics")


def _on_postgresql(connection: BaseDatabaseWrapper, name: str) -> None:
    """Run the statements of query ``name``, one by one, on PostgreSQL only."""
    if connection.vendor == "postgresql":
        for statement in query(connection.alias, name).split(";\n"):
            execute(connection, statement, {})
