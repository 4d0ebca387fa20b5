"""The shapes of the wire format. Business rules live in crunch.services."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crunch.choices import AttributeKind, Stage, State
from crunch.models import Attribute, Dataset, Item, Project, Status
from crunch.services.statuses import DIAGNOSTIC_FIELDS


class ProjectSerializer(serializers.ModelSerializer[Project]):
    class Meta:
        model = Project
        fields = [
            "id", "slug", "name", "description", "details", "workflow", "workflow_kind",
            "max_attempts", "is_public", "created", "updated",
        ]  # fmt: skip
        read_only_fields = ["slug", "created", "updated"]


class DatasetSerializer(serializers.ModelSerializer[Dataset]):
    # The metaclass moves declared fields into ``_declared_fields``, so this ``parent`` never
    # shadows ``Field.parent`` (the enclosing serializer) as the stubs believe.
    parent = serializers.SlugRelatedField(  # type: ignore[assignment]
        source="project", slug_field="slug", queryset=Project.objects.all(),
        help_text="The project's slug.",
    )  # fmt: skip
    project = serializers.CharField(source="project.slug", read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id", "slug", "name", "parent", "project", "description", "details",
            "base_file_path", "priority", "state", "stage", "attempts", "note",
            "claim_holder", "lease_expires", "created", "updated", "finished",
        ]  # fmt: skip
        read_only_fields = [
            "slug", "state", "stage", "attempts", "note", "claim_holder", "lease_expires",
            "created", "updated", "finished",
        ]  # fmt: skip


class ItemSerializer(serializers.ModelSerializer[Item]):
    # Not ``Field.parent`` either (see DatasetSerializer).
    parent = serializers.CharField(  # type: ignore[assignment]
        write_only=True, help_text="Slug of the dataset or item that holds this item."
    )
    dataset = serializers.CharField(source="dataset.slug", read_only=True)
    parent_item = serializers.CharField(source="parent.slug", read_only=True, default=None)

    class Meta:
        model = Item
        fields = [
            "id",
            "slug",
            "name",
            "parent",
            "dataset",
            "parent_item",
            "description",
            "details",
        ]
        read_only_fields = ["slug"]

    def validate_parent(self, value: str) -> dict[str, Any]:
        if dataset := Dataset.objects.filter(slug=value).first():
            return {"dataset": dataset, "parent": None}
        if item := Item.objects.select_related("dataset").filter(slug=value).first():
            return {"dataset": item.dataset, "parent": item}
        raise serializers.ValidationError(f"No dataset or item has the slug {value!r}.")

    def create(self, validated_data: dict[str, Any]) -> Item:
        validated_data.update(validated_data.pop("parent"))
        return super().create(validated_data)


def owner_by_slug(slug: str) -> Model | None:
    """The project, dataset or item with this slug (projects have no ':' in theirs)."""
    for model in (Project, Dataset, Item):
        if found := model._default_manager.filter(slug=slug).first():
            return found
    return None


VALUE_FIELDS: dict[AttributeKind, tuple[str, type[serializers.Field[Any, Any, Any, Any]]]] = {
    AttributeKind.TEXT: ("text", serializers.CharField),
    AttributeKind.URL: ("text", serializers.URLField),
    AttributeKind.INTEGER: ("integer", serializers.IntegerField),
    AttributeKind.FILESIZE: ("integer", serializers.IntegerField),
    AttributeKind.FLOAT: ("number", serializers.FloatField),
    AttributeKind.BOOLEAN: ("boolean", serializers.BooleanField),
    AttributeKind.DATE: ("date", serializers.DateField),
    AttributeKind.DATETIME: ("datetime", serializers.DateTimeField),
}


class AttributeSerializer(serializers.Serializer[Attribute]):
    """``item`` (a project, dataset or item slug), ``key`` and a value of the URL's type."""

    id = serializers.IntegerField(read_only=True)
    item = serializers.CharField(help_text="Slug of the project, dataset or item.")
    kind = serializers.CharField(read_only=True)
    key = serializers.CharField(max_length=255)
    display = serializers.CharField(read_only=True)

    def __init__(self, *args: Any, kind: AttributeKind = AttributeKind.TEXT, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.attribute_kind = kind
        if kind == AttributeKind.LATLONG:
            self.fields["latitude"] = serializers.FloatField(min_value=-90, max_value=90)
            self.fields["longitude"] = serializers.FloatField(min_value=-180, max_value=180)
        else:
            field_class = VALUE_FIELDS[kind][1]
            extra: dict[str, Any] = {"min_value": 0} if kind == AttributeKind.FILESIZE else {}
            self.fields["value"] = field_class(**extra)

    def validate_item(self, value: str) -> Model:
        owner = owner_by_slug(value)
        if owner is None:
            raise serializers.ValidationError(
                f"No project, dataset or item has the slug {value!r}."
            )
        return owner

    def create(self, validated_data: dict[str, Any]) -> Attribute:
        owner = validated_data["item"]
        attribute = Attribute(kind=self.attribute_kind, key=validated_data["key"])
        setattr(attribute, type(owner).__name__.lower(), owner)
        if self.attribute_kind == AttributeKind.LATLONG:
            attribute.number = validated_data["latitude"]
            attribute.longitude = validated_data["longitude"]
        else:
            setattr(attribute, VALUE_FIELDS[self.attribute_kind][0], validated_data["value"])
        attribute.save()
        return attribute

    def to_representation(self, instance: Attribute) -> dict[str, Any]:
        owner = instance.project or instance.dataset or instance.item
        return {
            "id": instance.id,
            "item": owner.slug if owner else None,
            "kind": instance.kind,
            "key": instance.key,
            "value": instance.value,
            "display": instance.display,
        }


@extend_schema_field(OpenApiTypes.INT)
class ChoiceByNumberOrName(serializers.Field[int, Any, int, Any]):
    """Accept a stage or state as its number (1-3, as django-crunch 0.1 sends) or its name."""

    def __init__(self, choices: type[Stage] | type[State], **kwargs: Any) -> None:
        self.choices = choices
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        text = str(data).strip()
        for choice in self.choices:
            if text == str(choice.value) or text.lower() == choice.label.lower():
                return int(choice.value)
        names = ", ".join(f"{c.value} ({c.label})" for c in self.choices)
        raise serializers.ValidationError(f"{data!r} is not one of {names}.")

    def to_representation(self, value: int) -> int:
        return int(value)


@extend_schema_field(OpenApiTypes.STR)
class DatasetByIdOrSlug(serializers.Field[Dataset, Any, int, Any]):
    def to_internal_value(self, data: Any) -> Dataset:
        text = str(data)
        lookup = {"pk": int(text)} if text.isdigit() else {"slug": text}
        dataset = Dataset.objects.select_related("project").filter(**lookup).first()
        if dataset is None:
            raise serializers.ValidationError(f"No dataset has the id or slug {text!r}.")
        return dataset

    def to_representation(self, value: Any) -> int:
        return int(value.pk)


class StatusSerializer(serializers.ModelSerializer[Status]):
    dataset = DatasetByIdOrSlug(help_text="The dataset's id (as django-crunch 0.1 sends) or slug.")
    stage = ChoiceByNumberOrName(Stage)
    state = ChoiceByNumberOrName(State)
    claim = serializers.UUIDField(source="claim_id", required=False, allow_null=True)
    key = serializers.CharField(
        max_length=64, required=False, allow_blank=True, allow_null=True,
        help_text="Any unique string; a post retried with the same key is recorded once.",
    )  # fmt: skip
    dataset_slug = serializers.CharField(source="dataset.slug", read_only=True)
    dataset_state = serializers.CharField(
        source="dataset.state", read_only=True,
        help_text="The dataset's state after this status ('pending' after a Fail: retried).",
    )  # fmt: skip
    stage_name = serializers.CharField(source="get_stage_display", read_only=True)
    state_name = serializers.CharField(source="get_state_display", read_only=True)

    class Meta:
        model = Status
        fields = [
            "id", "dataset", "dataset_slug", "dataset_state", "stage", "stage_name", "state",
            "state_name", "note", "claim", "key", "created", *DIAGNOSTIC_FIELDS,
        ]  # fmt: skip
        read_only_fields = ["created"]
        extra_kwargs = {name: {"required": False} for name in DIAGNOSTIC_FIELDS}


class ClaimRequestSerializer(serializers.Serializer[Any]):
    holder = serializers.CharField(
        max_length=255, required=False, allow_blank=True,
        help_text="Who claims: shown on the pages (e.g. user@host pid 123).",
    )  # fmt: skip
    lease_seconds = serializers.IntegerField(
        min_value=5, max_value=7 * 24 * 3600, required=False,
        help_text="How long the claim lives without a heartbeat.",
    )  # fmt: skip
    key = serializers.CharField(
        max_length=64, required=False, allow_blank=True,
        help_text="Any unique string; a request retried with the same key gets the same claim.",
    )  # fmt: skip


class ClaimSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    holder = serializers.CharField()
    lease_expires = serializers.DateTimeField()


class ClaimedDatasetSerializer(serializers.Serializer[Any]):
    """What a claim returns: the claim, the dataset, and its project with the workflow."""

    claim = serializers.SerializerMethodField()
    dataset = DatasetSerializer()
    project = ProjectSerializer(source="dataset.project")

    def get_claim(self, claim: Any) -> dict[str, Any]:
        return dict(ClaimSerializer(claim).data)


class PeekSerializer(serializers.Serializer[Any]):
    """django-crunch 0.1's answer to ``GET next/``: slugs only, nothing claimed."""

    project = serializers.CharField()
    dataset = serializers.CharField()


class ReleaseSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, allow_blank=True, default="")
