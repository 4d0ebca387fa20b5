"""Running the statements of queries.sql and loading their rows as model instances.

Rows load through ``Model.from_db``, their values converted by the ORM's own compiler
(``get_converters`` and ``apply_converters``, as a queryset converts its rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.sql import Query

M = TypeVar("M", bound=Model)


def connection_for(model: type[Model]) -> BaseDatabaseWrapper:
    """The connection the database router writes ``model`` to: every statement's."""
    return connections[router.db_for_write(model)]


def fetch(
    connection: BaseDatabaseWrapper, sql: str, params: Mapping[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a statement that answers rows; its column names and rows."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = list(cursor.fetchall())
        return [column[0] for column in cursor.description], rows


def execute(connection: BaseDatabaseWrapper, sql: str, params: Mapping[str, Any]) -> int:
    """Run a write; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


@dataclass(frozen=True)
class Loader(Generic[M]):
    """Instances of ``model`` from the columns of its table, in the table's order."""

    model: type[M]
    alias: str
    order: tuple[int, ...]
    """Where each concrete field's value is among the table's columns."""
    attnames: list[str]
    query: Query
    converters: dict[int, tuple[list[Any], Any]]
    """The compiler's converters of the fields, found once (``SQLCompiler.get_converters``)."""

    @property
    def width(self) -> int:
        return len(self.order)

    def load(self, values: Sequence[Any]) -> M:
        row = [values[index] for index in self.order]
        if self.converters:
            compiler = self.query.get_compiler(self.alias)
            (row,) = compiler.apply_converters([row], self.converters)
        return self.model.from_db(self.alias, self.attnames, row)


@cache
def loader(model: type[M], alias: str, names: tuple[str, ...]) -> Loader[M]:
    """The loader of ``model`` from columns ``names`` (those of ``SELECT table.*``)."""
    fields: list[Any] = list(model._meta.concrete_fields)
    position = {name: index for index, name in enumerate(names)}
    missing = [field.column for field in fields if field.column not in position]
    if missing or len(names) != len(fields):
        raise LookupError(
            f"The table {model._meta.db_table} has the columns {', '.join(names)}, not those "
            f"of {model.__name__} (missing: {', '.join(missing) or 'none'}): migrate it."
        )
    query = Query(model)
    columns = [field.get_col(model._meta.db_table) for field in fields]
    return Loader(
        model=model,
        alias=alias,
        order=tuple(position[field.column] for field in fields),
        attnames=[field.attname for field in fields],
        query=query,
        converters=query.get_compiler(alias).get_converters(columns),
    )


def load_joined(
    alias: str, names: Sequence[str], values: Sequence[Any], *models: type[Model]
) -> tuple[list[Model], list[Any]]:
    """Instances of ``models`` from a row of ``SELECT a.*, b.*, ...``, one after another,
    and the values of the columns after theirs."""
    found, start = [], 0
    for model in models:
        width = len(model._meta.concrete_fields)
        row_loader = loader(model, alias, tuple(names[start : start + width]))
        found.append(row_loader.load(values[start : start + width]))
        start += width
    return found, list(values[start:])


def prepared(model: type[Model], values: Mapping[str, Any]) -> dict[str, Any]:
    """{column: value as the database takes it} of field names (or attnames) and values,
    prepared by each field as ``save()`` prepares it (a related instance gives its key)."""
    connection = connection_for(model)
    params = {}
    for name, given in values.items():
        field: Any = model._meta.get_field(name)
        value = given.prepare_database_save(field) if isinstance(given, Model) else given
        params[field.column] = field.get_db_prep_save(value, connection)
    return params
