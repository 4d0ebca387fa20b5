"""Loading the named statements of queries.sql, as procrastinate loads its own.

A statement is the text after its ``-- name --`` line and its comment. The parts that
depend on the database are filled when it is first asked for: the user model's table and
columns, and the FOR UPDATE clauses that SQLite, which has no row locks, cannot run
(nor its RETURNING "table".*).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections

NAME = re.compile(r"(?:\n|^)-- ([a-z0-9_]+) --\n(?:--.*\n)*", re.MULTILINE)
LOCK = re.compile(r'\s*FOR UPDATE(?P<of> OF "?\w+"?)?(?P<skip> SKIP LOCKED)?')
RETURNING_TABLE = re.compile(r'RETURNING "\w+"\.\*')


def parse(text: str) -> dict[str, str]:
    """{name: statement} of a file of named statements (the file's header comes first)."""
    parts = NAME.split(text)[1:]
    return {name: sql.strip() for name, sql in zip(parts[::2], parts[1::2], strict=True)}


@cache
def statements() -> dict[str, str]:
    """Every statement of queries.sql, as written."""
    return parse(resources.files(__package__).joinpath("queries.sql").read_text("utf-8"))


class Slots(dict[str, str]):
    """The slots filled so far; any other ``{slot}`` stays for the call to fill."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@cache
def user_slots() -> Slots:
    """The user model's table and columns: AUTH_USER_MODEL may name another model."""
    user_model: Any = get_user_model()
    groups = user_model._meta.get_field("groups")
    names = {
        "user_table": user_model._meta.db_table,
        "user_pk": user_model._meta.pk.column,
        "user_groups": groups.m2m_db_table(),
        "user_groups_user": groups.m2m_column_name(),
        "user_groups_group": groups.m2m_reverse_name(),
    }
    return Slots({slot: f'"{name}"' for slot, name in names.items()})


@cache
def query(alias: str, name: str) -> str:
    """The statement ``name`` as the database ``alias`` runs it, its call's slots still open."""
    sql = statements()[name].format_map(user_slots())
    features = connections[alias].features

    def lock(match: re.Match[str]) -> str:
        if not features.has_select_for_update:
            return ""
        of = match["of"] if match["of"] and features.has_select_for_update_of else ""
        skip = match["skip"] if match["skip"] and features.has_select_for_update_skip_locked else ""
        return f" FOR UPDATE{of}{skip}"

    sql = LOCK.sub(lock, sql)
    if connections[alias].vendor == "sqlite":  # its RETURNING takes no "table".*
        sql = RETURNING_TABLE.sub("RETURNING *", sql)
    return sql


@cache
def composed(alias: str, name: str, **slots: str) -> str:
    """The statement ``name`` with each slot filled with the fragment of that name, or the
    text given (a list of placeholders); cached, so a call builds nothing twice."""
    parts = {
        slot: query(alias, value) if value in statements() else value
        for slot, value in slots.items()
    }
    sql = query(alias, name)
    while "{" in sql:  # a fragment may have slots of its own (may_process: {roles})
        filled = sql.format_map(Slots(parts))
        if filled == sql:
            break
        sql = filled
    return sql


def placeholders(prefix: str, count: int) -> str:
    """``%(prefix_0)s, %(prefix_1)s, ...``: the slot of a list of ``count`` values."""
    return ", ".join(f"%({prefix}_{index})s" for index in range(count))


def numbered(prefix: str, values: list[Any]) -> dict[str, Any]:
    """The parameters of ``placeholders(prefix, len(values))``."""
    return {f"{prefix}_{index}": value for index, value in enumerate(values)}
