"""The shapes of the wire format. Business rules live in crunch.services."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crunch.api.fields_once import FieldsOnce
from crunch.choices import AttributeKind, Stage, State
from crunch.models import (
    Attribute,
    Dataset,
    Item,
    Project,
    Status,
    default_base_file_path,
    unique_slug,
)
from crunch.services import paths
from crunch.services.statuses import DIAGNOSTIC_FIELDS

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
"""Column ranges: the same limits on SQLite (which stores any 64-bit value) and PostgreSQL."""
SLUG_MAX = Project._meta.get_field("slug").max_length or 1023
SLUG_SUFFIX_ROOM = 12
"""Characters kept free for the ``-2``, ``-3``... that ``unique_slug`` appends."""


def check_slug_length(name: str, prefix: str = "") -> None:
    """Refuse a name whose slug (with its owner's prefix) would not fit the slug column."""
    length = len(prefix) + len(slugify(name))
    if length + SLUG_SUFFIX_ROOM > SLUG_MAX:
        raise serializers.ValidationError(
            {
                "name": f"The name gives a slug of {length} characters "
                f"(with {prefix!r} before it); the limit is {SLUG_MAX - SLUG_SUFFIX_ROOM}: "
                "give a shorter name."
            }
        )


class ProjectSerializer(FieldsOnce, serializers.ModelSerializer[Project]):
    class Meta:
        model = Project
        fields = [
            "id", "slug", "name", "description", "details", "workflow", "workflow_kind",
            "max_attempts", "retry_delay", "allow_empty", "is_public", "created", "updated",
        ]  # fmt: skip
        read_only_fields = ["slug", "created", "updated"]
        extra_kwargs = {"max_attempts": {"max_value": INT32[1]}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None:
            check_slug_length(attrs.get("name", ""))
        return attrs


class SlugField(serializers.SlugRelatedField[Project]):
    """A related object by slug; a NUL is refused here since PostgreSQL refuses it in text."""

    plain_representation = True  # shows getattr(value, slug_field): see crunch.api.fields_once

    def to_internal_value(self, data: Any) -> Project:
        if isinstance(data, str) and "\x00" in data:
            raise serializers.ValidationError("Null characters are not allowed.")
        return super().to_internal_value(data)


class DatasetSerializer(FieldsOnce, serializers.ModelSerializer[Dataset]):
    # The metaclass moves declared fields into ``_declared_fields``, so this ``parent`` never
    # shadows ``Field.parent`` (the enclosing serializer) as the stubs believe.
    parent = SlugField(  # type: ignore[assignment]
        source="project", slug_field="slug", queryset=Project.objects.all(),
        help_text="The project's slug.",
    )  # fmt: skip
    project = serializers.CharField(source="project.slug", read_only=True)
    # Declared: the model's SlugField would be documented as [-a-zA-Z0-9_]+, without the ':'.
    slug = serializers.CharField(read_only=True, help_text="<project>:<dataset>")

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
        extra_kwargs = {"priority": {"min_value": INT32[0], "max_value": INT32[1]}}

    def validate_base_file_path(self, value: str) -> str:
        """Blank means the default folder; anything else must be a safe relative folder."""
        if value == "":
            return value
        try:
            return paths.clean_base_file_path(value)
        except paths.UnsafePath as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        project = attrs.get("project") or getattr(self.instance, "project", None)
        path = attrs.get("base_file_path")
        if self.instance is None and project is not None:
            check_slug_length(attrs.get("name", ""), prefix=f"{project.slug}:")
            if not path:
                # The folder save() will choose, checked now so the create cannot collide.
                slug = unique_slug(Dataset, attrs.get("name", ""), prefix=f"{project.slug}:")
                path = default_base_file_path(slug)
        if path:
            other = paths.overlapping_dataset(path, exclude_pk=getattr(self.instance, "pk", None))
            if other is not None:
                raise serializers.ValidationError(
                    {"base_file_path": paths.overlap_message(path, other)}
                )
        return attrs


class ItemSerializer(serializers.ModelSerializer[Item]):
    # Not ``Field.parent`` either (see DatasetSerializer).
    parent = serializers.CharField(  # type: ignore[assignment]
        write_only=True, help_text="Slug of the dataset or item that holds this item."
    )
    dataset = serializers.CharField(source="dataset.slug", read_only=True)
    # A method, not a field with a default: DRF leaves those out of partial updates.
    parent_item = serializers.SerializerMethodField()
    slug = serializers.CharField(read_only=True, help_text="<dataset>:<item>")

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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and "parent" in attrs:
            owner = attrs["parent"]["parent"] or attrs["parent"]["dataset"]
            check_slug_length(attrs.get("name", ""), prefix=f"{owner.slug}:")
        return attrs

    @extend_schema_field({"type": "string", "nullable": True})
    def get_parent_item(self, item: Item) -> str | None:
        return item.parent.slug if item.parent else None

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
    if "\x00" in slug:  # PostgreSQL refuses NUL in text: no row can hold one
        return None
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


def any_in_schema(field_class: type[Any]) -> type[Any]:
    """``field_class`` documented as any JSON value: one schema serves every attribute type."""
    return extend_schema_field(OpenApiTypes.ANY)(type(field_class.__name__, (field_class,), {}))


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
            extra: dict[str, Any] = {}
            if kind in (AttributeKind.INTEGER, AttributeKind.FILESIZE):
                low = 0 if kind == AttributeKind.FILESIZE else INT64[0]
                extra = {"min_value": low, "max_value": INT64[1]}
            self.fields["value"] = any_in_schema(field_class)(**extra)

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

    plain_representation = True  # see crunch.api.fields_once.PLAIN

    def __init__(self, choices: type[Stage] | type[State], **kwargs: Any) -> None:
        self.choice_enum = choices
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        text = str(data).strip()
        for choice in self.choice_enum:
            if text == str(choice.value) or text.lower() == choice.label.lower():
                return int(choice.value)
        names = ", ".join(f"{c.value} ({c.label})" for c in self.choice_enum)
        raise serializers.ValidationError(f"{data!r} is not one of {names}.")

    def to_representation(self, value: int) -> int:
        return int(value)


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class DatasetByIdOrSlug(serializers.Field[Any, Any, int, Any]):
    """A dataset's id (an int) or slug (a str), checked for form only.

    The status service looks the row up itself, in the query that locks it.
    """

    plain_representation = True

    def to_internal_value(self, data: Any) -> int | str:
        text = str(data)
        if "\x00" in text:
            raise serializers.ValidationError("A dataset's id or slug holds no NUL character.")
        # ASCII digits only: '١' and '²' pass str.isdigit() but are no id.
        if text.isascii() and text.isdigit():
            if int(text) > INT64[1]:
                raise serializers.ValidationError(no_dataset(text))
            return int(text)
        if len(text) > 1023:
            raise serializers.ValidationError(no_dataset(text[:40] + "..."))
        return text

    def to_representation(self, value: Any) -> int:
        return int(value.pk)


class LabelOf(serializers.CharField):
    """A stage's or state's name, read from its number (``get_stage_display`` as a source
    would have DRF inspect the method's signature on every status it shows)."""

    plain_representation = True

    def __init__(self, choices: type[Stage] | type[State], **kwargs: Any) -> None:
        self.choice_enum = choices
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return str(self.choice_enum(value).label)


def no_dataset(text: str) -> str:
    return f"No dataset has the id or slug {text!r}."


class StartSerializer(FieldsOnce, serializers.ModelSerializer[Status]):
    """The diagnostics of a run's Setup Start, recorded with its claim."""

    class Meta:
        model = Status
        fields = list(DIAGNOSTIC_FIELDS)
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
    start = StartSerializer(
        required=False,
        help_text="Record the run's Setup Start with the claim (one call less per dataset), "
        "with these diagnostics; the answer's 'started' says it was.",
    )  # fmt: skip


class NextClaimSerializer(ClaimRequestSerializer):
    project = serializers.CharField(
        max_length=1023, required=False, allow_blank=True,
        help_text="Claim from this project only (its slug).",
    )  # fmt: skip


class StatusSerializer(FieldsOnce, serializers.ModelSerializer[Status]):
    dataset = DatasetByIdOrSlug(help_text="The dataset's id (as django-crunch 0.1 sends) or slug.")
    stage = ChoiceByNumberOrName(Stage)
    state = ChoiceByNumberOrName(State)
    claim = serializers.UUIDField(
        source="claim_id", required=False, allow_null=True, write_only=True,
        help_text="The claim this status reports on; never shown (only its holder knows it).",
    )  # fmt: skip
    key = serializers.CharField(
        max_length=64, required=False, allow_blank=True, allow_null=True,
        help_text="Any unique string; a post retried with the same key is recorded once.",
    )  # fmt: skip
    workflow_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}\Z", required=False, allow_blank=True,
        error_messages={"invalid": "Give the SHA-256 as 64 lowercase hexadecimal digits."},
        help_text="SHA-256 of the workflow the client ran (sent with Workflow Start).",
    )  # fmt: skip
    next = NextClaimSerializer(
        write_only=True, required=False,
        help_text="With an Upload Success: claim the next dataset in the same call; the "
        "answer's 'next' holds the claim (null when none is left).",
    )  # fmt: skip
    dataset_slug = serializers.CharField(source="dataset.slug", read_only=True)
    dataset_state = serializers.CharField(
        source="dataset.state", read_only=True,
        help_text="The dataset's state after this status ('pending' after a Fail: retried).",
    )  # fmt: skip
    stage_name = LabelOf(Stage, source="stage")
    state_name = LabelOf(State, source="state")

    class Meta:
        model = Status
        fields = [
            "id", "dataset", "dataset_slug", "dataset_state", "stage", "stage_name", "state",
            "state_name", "note", "claim", "key", "workflow_sha256", "next", "created",
            *DIAGNOSTIC_FIELDS,
        ]  # fmt: skip
        read_only_fields = ["created"]
        extra_kwargs = {name: {"required": False} for name in DIAGNOSTIC_FIELDS}


class RenewedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    lease_expires = serializers.DateTimeField()


class ClaimSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    holder = serializers.CharField()
    lease_expires = serializers.DateTimeField()


class ClaimedDatasetSerializer(serializers.Serializer[Any]):
    """What a claim returns: the claim, the dataset, and its project with the workflow."""

    claim = serializers.SerializerMethodField()
    started = serializers.BooleanField(help_text="Whether the Setup Start was recorded too.")
    dataset = DatasetSerializer()
    project = ProjectSerializer(source="dataset.project")

    def get_claim(self, claim: Any) -> dict[str, Any]:
        return dict(ClaimSerializer(claim).data)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # What the fields above give, without copying the nested serializers per claim.
        dataset = instance.dataset
        return {
            "claim": self.get_claim(instance),
            "started": bool(instance.started),
            "dataset": DatasetSerializer(dataset).data,
            "project": ProjectSerializer(dataset.project).data,
        }


class PeekSerializer(serializers.Serializer[Any]):
    """django-crunch 0.1's answer to ``GET next/``: slugs only, nothing claimed."""

    project = serializers.CharField()
    dataset = serializers.CharField()


class ReleaseSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, allow_blank=True, default="")


class ExplanationSerializer(serializers.Serializer[Any]):
    dataset = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    command = serializers.CharField()
