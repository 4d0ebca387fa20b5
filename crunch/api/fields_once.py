"""Model serializers that build their fields from the model once per class, not per use.

DRF's ModelSerializer maps every model field to a serializer field each time one is made:
about a millisecond for a status, twice per status post, more than the post's queries.
The built fields depend only on the class (none of ours reads the context or the instance
in ``get_fields``), so they are built once, and each use gets copies of them: DRF's deep
copy would run each field's constructor again and copy each model field and its choices.
"""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers
from rest_framework.fields import Field

_BUILT: dict[type[Any], dict[str, Field[Any, Any, Any, Any]]] = {}


class FieldsOnce(serializers.ModelSerializer[Any]):
    """A ModelSerializer whose model-derived fields are built on first use of the class."""

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        cls = type(self)
        if cls not in _BUILT:
            _BUILT[cls] = super().get_fields()
        return {name: fresh(field) for name, field in _BUILT[cls].items()}


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
