"""Model serializers that build their fields from the model once per class, not per use.

DRF's ModelSerializer maps every model field to a serializer field each time one is made:
about a millisecond for a status, twice per status post, more than the post's queries.
The built fields depend only on the class (none of ours reads the context or the instance
in ``get_fields``), so they are built once, and each use gets copies of them: DRF's deep
copy would run each field's constructor again and copy each model field and its choices.

The same holds for what a status post spends around its queries: DRF validates each of a
status's thirty fields, sent or not, and shows each through two generic calls. Here only
the fields a JSON body holds (and those it must hold, or that have a default) are
validated, with the result DRF would give; and an object is shown by a plan made once
per class when every field is a plain column read (see ``Plan``), else as DRF does.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from django.db import models
from rest_framework import fields, serializers
from rest_framework.fields import Field, empty

_BUILT: dict[type[Any], dict[str, Field[Any, Any, Any, Any]]] = {}

PLAIN = {
    kind.to_representation
    for kind in (
        fields.CharField, fields.IntegerField, fields.BigIntegerField, fields.FloatField,
        fields.BooleanField, fields.DateTimeField, fields.DateField, fields.UUIDField,
        fields.ChoiceField, fields.ReadOnlyField,
    )
}  # fmt: skip
"""Field types whose ``to_representation`` reads only the value (no context, no parent).
A field class of ours says so with ``plain_representation = True``."""


@dataclasses.dataclass(frozen=True)
class Shown:
    """One field of a plan: its name, the attributes read in turn, the conversion."""

    name: str
    path: tuple[str, ...]
    convert: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to show an object of one serializer class without DRF's per-field machinery.

    Made only when every readable field is of a plain type and reads a column of the
    model, through relations that cannot be null: then the generic path would give the
    same dict (None shown as None, the rest converted), minus its overhead.
    """

    shown: tuple[Shown, ...]

    def show(self, instance: Any) -> dict[str, Any]:
        ret: dict[str, Any] = {}
        for field in self.shown:
            value = instance
            for attr in field.path:
                value = getattr(value, attr)
            ret[field.name] = None if value is None else field.convert(value)
        return ret


_PLANS: dict[type[Any], Plan | None] = {}
_VALIDATORS: dict[type[Any], list[Any]] = {}
_DEFAULTED: dict[type[Any], bool] = {}


class FieldsOnce(serializers.ModelSerializer[Any]):
    """A ModelSerializer whose model-derived fields are built on first use of the class."""

    _present: Any = None

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        return {name: fresh(field) for name, field in built(type(self)).items()}

    def get_validators(self) -> list[Any]:
        # The model's unique-together checks, found once per class (DRF looks on each use).
        cls = type(self)
        if cls not in _VALIDATORS:
            _VALIDATORS[cls] = super().get_validators()
        return list(_VALIDATORS[cls])

    def to_internal_value(self, data: Any) -> Any:
        # A JSON object: fields it does not hold would only be skipped (see _writable_fields).
        self._present = data if type(data) is dict else None
        try:
            return super().to_internal_value(data)
        finally:
            self._present = None

    @property
    def _writable_fields(self) -> list[Field[Any, Any, Any, Any]]:
        present = self._present
        # Not a JSON object, or the fields are bound already (``fields`` was read): DRF's way.
        if present is None or "fields" in self.__dict__:
            return [field for field in self.fields.values() if not field.read_only]
        # An absent optional field without a default would raise SkipField: not asked, and
        # not copied either (``self.fields`` would copy and bind all thirty of a status's).
        chosen = []
        for name, field in built(type(self)).items():
            if not field.read_only and (
                name in present or field.required or field.default is not empty
            ):
                copied = fresh(field)
                copied.bind(field_name=name, parent=self)
                chosen.append(copied)
        return chosen

    def _read_only_defaults(self) -> dict[str, Any]:
        # DRF reads them from ``self.fields`` on every validation; most classes have none.
        cls = type(self)
        if cls not in _DEFAULTED:
            _DEFAULTED[cls] = any(
                field.read_only and field.default is not empty for field in built(cls).values()
            )
        return super()._read_only_defaults() if _DEFAULTED[cls] else {}

    def to_representation(self, instance: Any) -> dict[str, Any]:
        cls = type(self)
        if cls not in _PLANS:
            _PLANS[cls] = plan_for(cls)
        plan = _PLANS[cls]
        return super().to_representation(instance) if plan is None else plan.show(instance)


class DeclaredOnce(serializers.Serializer[Any]):
    """A plain Serializer whose declared fields are copied, not constructed, on each use.

    DRF deep-copies them, which runs each field's constructor again: a third of the time
    of validating a status that claims the next dataset went to its claim request's fields.
    """

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        return {name: fresh(field) for name, field in self._declared_fields.items()}


def built(cls: type[Any]) -> dict[str, Field[Any, Any, Any, Any]]:
    """The class's fields as DRF builds them, unbound; built on first use."""
    if cls not in _BUILT:
        fields = super(FieldsOnce, cls()).get_fields()
        for field in fields.values():
            field.validators  # noqa: B018 - made now, once, and shared by the copies
        _BUILT[cls] = fields
    return _BUILT[cls]


def plan_for(cls: type[Any]) -> Plan | None:
    """The class's Plan, or None when a field needs DRF's generic path."""
    model = cls.Meta.model
    shown = []
    for name, field in built(cls).items():
        if field.write_only:
            continue
        plain = getattr(field, "plain_representation", False)
        path = tuple((field.source or name).split("."))
        if not (plain or type(field).to_representation in PLAIN) or not column_path(model, path):
            return None
        shown.append(Shown(name, path, field.to_representation))
    return Plan(tuple(shown))


def column_path(model: type[models.Model], path: tuple[str, ...]) -> bool:
    """Whether ``path`` reads a model field, through forward relations that are never null."""
    for index, attr in enumerate(path):
        try:
            field = model._meta.get_field(attr)
        except Exception:
            return False
        if not field.concrete:
            return False
        if index == len(path) - 1:
            return True
        if not (field.many_to_one or field.one_to_one) or field.null:
            return False
        model = field.related_model  # type: ignore[assignment]
    return False


def fresh(field: Field[Any, Any, Any, Any]) -> Field[Any, Any, Any, Any]:
    """An unbound field like ``field``; nested serializers are copied whole, as DRF does.

    A field's own attributes are copied, not its arguments replayed: binding sets only
    attributes of the copy, and the validators and messages it shares are never changed.
    """
    if isinstance(field, serializers.BaseSerializer):
        return copy.deepcopy(field)
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone
