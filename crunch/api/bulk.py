"""The wire shape of bulk registration: a list of datasets, each with typed attributes."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from crunch.choices import AttributeKind
from crunch.services.registration import NewAttribute, NewDataset

BATCH_MAX = 5000  # datasets per request
KIND_ALIASES = {"integer": "int", "boolean": "bool", "text": "char", "string": "char",
                "lat-long": "latlong"}  # fmt: skip
VALUE_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    AttributeKind.TEXT: serializers.CharField(max_length=100_000),
    AttributeKind.URL: serializers.URLField(),
    AttributeKind.INTEGER: serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1),
    AttributeKind.FILESIZE: serializers.IntegerField(min_value=0, max_value=2**63 - 1),
    AttributeKind.FLOAT: serializers.FloatField(),
    AttributeKind.BOOLEAN: serializers.BooleanField(),
    AttributeKind.DATE: serializers.DateField(),
    AttributeKind.DATETIME: serializers.DateTimeField(),
}


class NewAttributeSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(max_length=255)
    kind = serializers.CharField(help_text=f"One of {', '.join(AttributeKind.values)}.")
    value = serializers.JSONField(help_text="For latlong: [latitude, longitude].")

    def validate(self, attrs: dict[str, Any]) -> NewAttribute:
        kind_text = KIND_ALIASES.get(attrs["kind"], attrs["kind"])
        if kind_text not in AttributeKind.values:
            raise serializers.ValidationError(
                {"kind": f"{attrs['kind']!r} is not one of {', '.join(AttributeKind.values)}."}
            )
        kind = AttributeKind(kind_text)
        value = attrs["value"]
        if kind == AttributeKind.LATLONG:
            if not (isinstance(value, list) and len(value) == 2):
                raise serializers.ValidationError({"value": "Give [latitude, longitude]."})
            latitude = serializers.FloatField(min_value=-90, max_value=90)
            longitude = serializers.FloatField(min_value=-180, max_value=180)
            value = (latitude.run_validation(value[0]), longitude.run_validation(value[1]))
        else:
            value = VALUE_FIELDS[kind].run_validation(value)
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
    max_length = BATCH_MAX
    allow_empty = False


class RegistrationSerializer(serializers.Serializer[Any]):
    created = serializers.ListField(child=serializers.CharField())
    existing = serializers.ListField(child=serializers.CharField())
