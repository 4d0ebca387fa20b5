"""The wire shape of bulk registration: a list of datasets, each with typed attributes.

The serializers below describe the shape (for the schema) and decide every doubtful
case. Running them per dataset costs more than the registration itself, so the list
takes a fast path first: plain values of exactly the expected types are checked with
simple typed tests, and any other value (a number sent as text, a date, non-ASCII text,
a missing key...) goes to its serializer field, whose answer and message are the ones
DRF would give. Errors come back as one line per refused dataset, naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from crunch.choices import AttributeKind
from crunch.services.registration import NewAttribute, NewDataset

BATCH_MAX = 5000  # datasets per request
ERRORS_SHOWN = 10  # refused datasets named in one answer
KIND_ALIASES = {"integer": "int", "boolean": "bool", "text": "char", "string": "char",
                "lat-long": "latlong"}  # fmt: skip
KINDS = {
    **{kind.value: kind for kind in AttributeKind},
    **{alias: AttributeKind(value) for alias, value in KIND_ALIASES.items()},
}
"""Every name a kind may be sent as, to its kind."""
INT64 = 2**63
VALUE_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    AttributeKind.TEXT: serializers.CharField(max_length=100_000),
    AttributeKind.URL: serializers.URLField(),
    AttributeKind.INTEGER: serializers.IntegerField(min_value=-INT64, max_value=INT64 - 1),
    AttributeKind.FILESIZE: serializers.IntegerField(min_value=0, max_value=INT64 - 1),
    AttributeKind.FLOAT: serializers.FloatField(),
    AttributeKind.BOOLEAN: serializers.BooleanField(),
    AttributeKind.DATE: serializers.DateField(),
    AttributeKind.DATETIME: serializers.DateTimeField(),
}
LATITUDE = serializers.FloatField(min_value=-90, max_value=90)
LONGITUDE = serializers.FloatField(min_value=-180, max_value=180)


class NewAttributeSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(max_length=255)
    kind = serializers.CharField(help_text=f"One of {', '.join(AttributeKind.values)}.")
    value = serializers.JSONField(help_text="For latlong: [latitude, longitude].")

    def validate(self, attrs: dict[str, Any]) -> NewAttribute:
        kind = KINDS.get(attrs["kind"])
        if kind is None:
            raise serializers.ValidationError(
                {"kind": f"{attrs['kind']!r} is not one of {', '.join(AttributeKind.values)}."}
            )
        value = attrs["value"]
        try:
            if kind == AttributeKind.LATLONG:
                if not (isinstance(value, list) and len(value) == 2):
                    raise serializers.ValidationError("Give [latitude, longitude].")
                value = (LATITUDE.run_validation(value[0]), LONGITUDE.run_validation(value[1]))
            else:
                value = VALUE_FIELDS[kind].run_validation(value)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"value": exc.detail}) from None
        return NewAttribute(key=attrs["key"], kind=kind, value=value)


class NewDatasetSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=1000)
    base_file_path = serializers.CharField(max_length=4095, required=False, allow_blank=True)
    description = serializers.CharField(max_length=1023, required=False, allow_blank=True)
    details = serializers.CharField(max_length=100_000, required=False, allow_blank=True)
    priority = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1, required=False)
    attributes = NewAttributeSerializer(many=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> NewDataset:
        return NewDataset(**{**attrs, "attributes": tuple(attrs.get("attributes", ()))})


class BulkDatasetsSerializer(serializers.ListSerializer[Any]):
    child = NewDatasetSerializer()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # ListSerializer reads these from its arguments only, not from class attributes.
        kwargs.setdefault("max_length", BATCH_MAX)
        kwargs.setdefault("allow_empty", False)
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data: Any) -> list[NewDataset]:
        if not isinstance(data, list) or not data or len(data) > BATCH_MAX:
            return list(super().to_internal_value(data))  # DRF's own refusal
        entries: list[NewDataset] = []
        refused: list[str] = []
        for index, item in enumerate(data):
            entry = plain_dataset(item)
            if entry is None:
                try:
                    entry = self.child.run_validation(item)
                except serializers.ValidationError as exc:
                    refused.append(refusal(index, item, exc.detail))
                    continue
            entries.append(entry)
        if refused:
            more = len(refused) - ERRORS_SHOWN
            shown = refused[:ERRORS_SHOWN] + ([f"... and {more} more."] if more > 0 else [])
            raise serializers.ValidationError({"datasets": shown})
        return entries


class RegistrationSerializer(serializers.Serializer[Any]):
    created = serializers.ListField(child=serializers.CharField())
    existing = serializers.ListField(child=serializers.CharField())


# ---------------------------------------------------------------------------- fast path

DATASET_TEXT = {"name": (1000, False), "base_file_path": (4095, True),
                "description": (1023, True), "details": (100_000, True)}  # fmt: skip
"""{field: (max_length, allow_blank)} as NewDatasetSerializer says."""


def plain_dataset(item: Any) -> NewDataset | None:
    """``item`` as NewDatasetSerializer would read it, when every value is a plain one of
    its type; None when any is not (the serializer then decides)."""
    if type(item) is not dict or "name" not in item:
        return None
    fields: dict[str, Any] = {}
    for name, (longest, blank) in DATASET_TEXT.items():
        if name in item:
            text = plain_text(item[name], longest, blank=blank)
            if text is None:
                return None
            fields[name] = text
    if "priority" in item:
        priority = item["priority"]
        if type(priority) is not int or not -(2**31) <= priority < 2**31:
            return None
        fields["priority"] = priority
    attributes = item.get("attributes", ())
    if type(attributes) is not list:
        return None
    typed = [plain_attribute(attribute) for attribute in attributes]
    if None in typed:
        return None
    return NewDataset(**fields, attributes=tuple(a for a in typed if a is not None))


def plain_text(value: Any, longest: int, *, blank: bool) -> str | None:
    """A CharField's value for ASCII text without NUL (stripped, as DRF does); else None."""
    if type(value) is not str or not value.isascii() or "\x00" in value:
        return None
    text = value.strip()
    if len(text) > longest or not (text or blank):
        return None
    return text


def plain_attribute(attribute: Any) -> NewAttribute | None:
    if type(attribute) is not dict or not {"key", "kind", "value"} <= attribute.keys():
        return None
    key = plain_text(attribute["key"], 255, blank=False)
    kind = KINDS.get(attribute["kind"]) if type(attribute["kind"]) is str else None
    if key is None or kind is None:
        return None
    value = plain_value(kind, attribute["value"])
    return None if value is None else NewAttribute(key=key, kind=kind, value=value)


def plain_value(kind: AttributeKind, value: Any) -> Any:  # noqa: PLR0911 (one return a kind)
    """The typed value for a plain one of the kind's JSON type; None for anything else."""
    if kind == AttributeKind.INTEGER:
        return value if type(value) is int and -INT64 <= value < INT64 else None
    if kind == AttributeKind.FILESIZE:
        return value if type(value) is int and 0 <= value < INT64 else None
    if kind == AttributeKind.FLOAT:
        return value if type(value) is float and math.isfinite(value) else None
    if kind == AttributeKind.BOOLEAN:
        return value if type(value) is bool else None
    if kind == AttributeKind.TEXT:
        return plain_text(value, 100_000, blank=False)
    if kind == AttributeKind.LATLONG and type(value) is list and len(value) == 2:
        latitude, longitude = value
        if type(latitude) is float and type(longitude) is float:
            if -90 <= latitude <= 90 and -180 <= longitude <= 180:
                return (latitude, longitude)
    return None  # URLs, dates and anything unusual: the serializer's fields decide


# ---------------------------------------------------------------------------- messages


def refusal(index: int, item: Any, detail: Any) -> str:
    """One line: which dataset of the list, and what is wrong with it."""
    name = item.get("name") if isinstance(item, Mapping) else None
    which = f"Dataset {index} of the list" + (f" ({name!r})" if isinstance(name, str) else "")
    return f"{which}: {'; '.join(flatten(detail))}"


def flatten(detail: Any, where: str = "") -> list[str]:
    """DRF's nested error detail as ``field: message`` parts."""
    if isinstance(detail, Mapping):
        parts: list[str] = []
        for field, inner in detail.items():
            if isinstance(field, int):  # a nested list's errors, by position
                parts += flatten(inner, f"{where}[{field}]")
                continue
            label = "" if field == "non_field_errors" else str(field)
            parts += flatten(inner, f"{where}.{label}" if where and label else where or label)
        return parts
    if isinstance(detail, list):
        if all(isinstance(inner, (Mapping, list)) for inner in detail):
            return [
                part
                for index, inner in enumerate(detail)
                if inner
                for part in flatten(inner, f"{where}[{index}]")
            ]
        return [f"{where}: {' '.join(map(str, detail))}" if where else " ".join(map(str, detail))]
    return [f"{where}: {detail}" if where else str(detail)]
