"""The shapes of the wire format for projects, datasets, items and attributes; a worker's
calls are crunch.api.run_serializers'. Business rules live in crunch.services.

An object named in a body (a dataset's project, an item's parent, an attribute's owner)
is looked up among those the caller may view: one they may not answers exactly as one
that does not exist (404, the same message), so no answer tells whether it exists.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from crunch.access import Action, datasets_where, may, project_of, projects_where
from crunch.choices import AttributeKind
from crunch.constants import INT64
from crunch.models import (
    Attribute,
    Dataset,
    Item,
    Project,
    default_base_file_path,
    unique_slug,
    url_value,
)
from crunch.services import paths
from crunch.services.retry_policy import Policy

INT32 = (-(2**31), 2**31 - 1)
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


class ProjectSerializer(serializers.ModelSerializer[Project]):
    class Meta:
        model = Project
        fields = [
            "id", "slug", "name", "description", "details", "workflow", "workflow_kind",
            "container", "max_attempts", "retry_delay", "retry_policy", "allow_empty",
            "is_public", "paused", "created", "updated",
        ]  # fmt: skip
        read_only_fields = ["slug", "created", "updated"]
        extra_kwargs = {
            "max_attempts": {"max_value": INT32[1]},
            "retry_policy": {
                "help_text": "The project's overrides of the default retry policy: {reason: "
                "{retry: bool, spend: bool, delay: seconds or null}}; a reason left out keeps "
                "its default (see retry_rules)."
            },
            # Whitespace anywhere is refused (crunch.models.container_image), not trimmed away.
            "container": {"trim_whitespace": False},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None:
            check_slug_length(attrs.get("name", ""))
        return attrs


class ProjectDetailSerializer(ProjectSerializer):
    """A project as its own endpoints show it: with the retry policy as it applies."""

    retry_rules = serializers.SerializerMethodField(
        help_text="Every failure reason's rule as it applies: {reason: {retry, spend, delay, "
        "default}}; default: the project left it to crunch's default."
    )

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "retry_rules"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_retry_rules(self, project: Project) -> dict[str, dict[str, Any]]:
        return Policy.of(project.retry_policy).rules()


def viewer(serializer: serializers.Field[Any, Any, Any, Any]) -> Any:
    """The user of the request a serializer validates; None when used without one (by
    trusted code, which sees everything)."""
    request = serializer.context.get("request")
    return getattr(request, "user", None) if request is not None else None


def visible_datasets(serializer: serializers.Field[Any, Any, Any, Any]) -> QuerySet[Dataset]:
    user = viewer(serializer)
    return Dataset.objects.all() if user is None else datasets_where(user, Action.VIEW)


def may_view(serializer: serializers.Field[Any, Any, Any, Any], project: Project) -> bool:
    user = viewer(serializer)
    return user is None or may(user, Action.VIEW, project)


class SlugField(serializers.SlugRelatedField[Project]):
    """A project by slug, among those the caller may view; 404 alike for the others.

    A NUL is refused here since PostgreSQL refuses it in text.
    """

    def get_queryset(self) -> QuerySet[Project]:
        user = viewer(self)
        return Project.objects.all() if user is None else projects_where(user, Action.VIEW)

    def to_internal_value(self, data: Any) -> Project:
        if isinstance(data, str) and "\x00" in data:
            raise serializers.ValidationError("Null characters are not allowed.")
        if not isinstance(data, (str, int)) or isinstance(data, bool):
            self.fail("invalid")
        try:
            return self.get_queryset().get(**{self.slug_field: str(data)})
        except ObjectDoesNotExist:
            raise NotFound(f"No project has the slug {str(data)!r}.") from None


MOVED = {
    Dataset: "A dataset never changes project: its slug and the folders made from it, in "
    "storage and on compute nodes, name {current!r}. Create a new dataset in {new!r} instead.",
    Item: "An item never changes dataset or parent: its slug is made from {current!r}'s. "
    "Create a new item under {new!r} instead.",
}


def refuse_moves(
    instance: Dataset | Item, data: Any, owner: str, current: dict[str, str | None]
) -> None:
    """400 when an update's body gives a field of ``current`` ({field: its value now})
    another value: ``instance`` would leave ``owner`` (a slug).

    The slug carries the owner's, and a dataset's folders derive from its slug: one that
    changed project would share them with a dataset registered later under its old name.
    """
    if not hasattr(data, "get"):
        return
    for name, value in current.items():
        if name in data and data[name] != value:
            message = MOVED[type(instance)].format(current=owner, new=str(data[name])[:200])
            raise serializers.ValidationError({name: [message]})


class DatasetSerializer(serializers.ModelSerializer[Dataset]):
    # The metaclass moves declared fields into ``_declared_fields``, so this ``parent`` never
    # shadows ``Field.parent`` (the enclosing serializer) as the stubs believe.
    parent = SlugField(  # type: ignore[assignment]
        source="project", slug_field="slug", queryset=Project.objects.all(),
        help_text="The project's slug.",
    )  # fmt: skip
    project = serializers.CharField(source="project.slug", read_only=True)
    # Declared: the model's SlugField would be documented as [-a-zA-Z0-9_]+, without the ':'.
    slug = serializers.CharField(read_only=True, help_text="<project>:<dataset>")
    # Text, not the model's choices: its enum would lack the blank, and name a second enum.
    last_reason = serializers.CharField(
        read_only=True, help_text="Why its last run failed: a status's reason; '' for none."
    )

    class Meta:
        model = Dataset
        fields = [
            "id", "slug", "name", "parent", "project", "description", "details",
            "base_file_path", "priority", "state", "stage", "attempts", "note", "last_reason",
            "last_reason_detail", "needs_memory", "needs_seconds", "claim_holder",
            "lease_expires", "created", "updated", "finished",
        ]  # fmt: skip
        read_only_fields = [
            "slug", "state", "stage", "attempts", "note", "last_reason", "last_reason_detail",
            "needs_memory", "needs_seconds", "claim_holder", "lease_expires", "created",
            "updated", "finished",
        ]  # fmt: skip
        extra_kwargs = {"priority": {"min_value": INT32[0], "max_value": INT32[1]}}

    def to_internal_value(self, data: Any) -> Any:
        if self.instance is not None:
            project = self.instance.project.slug
            refuse_moves(self.instance, data, project, {"parent": project, "project": project})
        return super().to_internal_value(data)

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
                named = may_view(self, project_of(other))
                raise serializers.ValidationError(
                    {"base_file_path": paths.overlap_message(path, other, named=named)}
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

    def to_internal_value(self, data: Any) -> Any:
        if (item := self.instance) is not None:
            parent = item.parent.slug if item.parent else None
            owner = parent or item.dataset.slug
            current = {"parent": owner, "dataset": item.dataset.slug, "parent_item": parent}
            refuse_moves(item, data, owner, current)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and "parent" in attrs:
            owner = attrs["parent"]["parent"] or attrs["parent"]["dataset"]
            check_slug_length(attrs.get("name", ""), prefix=f"{owner.slug}:")
        return attrs

    @extend_schema_field({"type": "string", "nullable": True})
    def get_parent_item(self, item: Item) -> str | None:
        return item.parent.slug if item.parent else None

    def validate_parent(self, value: str) -> dict[str, Any]:
        if self.instance is not None:  # the same parent (to_internal_value refused others)
            return {"dataset": self.instance.dataset, "parent": self.instance.parent}
        visible = visible_datasets(self)
        if dataset := visible.filter(slug=value).first():
            return {"dataset": dataset, "parent": None}
        items = Item.objects.select_related("dataset").filter(dataset__in=visible)
        if item := items.filter(slug=value).first():
            return {"dataset": item.dataset, "parent": item}
        raise NotFound(f"No dataset or item has the slug {value!r}.")

    def create(self, validated_data: dict[str, Any]) -> Item:
        validated_data.update(validated_data.pop("parent"))
        return super().create(validated_data)

    def update(self, instance: Item, validated_data: dict[str, Any]) -> Item:
        validated_data.pop("parent", None)  # never changed: see refuse_moves
        return super().update(instance, validated_data)


def owner_by_slug(slug: str) -> Model | None:
    """The project, dataset or item with this slug (projects have no ':' in theirs)."""
    if "\x00" in slug:  # PostgreSQL refuses NUL in text: no row can hold one
        return None
    for model in (Project, Dataset, Item):
        if found := model._default_manager.filter(slug=slug).first():
            return found
    return None


class URLValueField(serializers.CharField):
    """A URL attribute's value, checked by the model's validator (the admin's too)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(url_value)


VALUE_FIELDS: dict[AttributeKind, tuple[str, type[serializers.Field[Any, Any, Any, Any]]]] = {
    AttributeKind.TEXT: ("text", serializers.CharField),
    AttributeKind.URL: ("text", URLValueField),
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
        if owner is None or not may_view(self, project_of(owner)):
            raise NotFound(f"No project, dataset or item has the slug {value!r}.")
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
