"""Datasets, their items, attributes and statuses.

A dataset never changes project and an item never changes dataset or parent: their slugs
carry their owner's, and a dataset's stored folder and work folder are derived from its
slug. So those fields, and the slugs, are read-only on change; on add the slug is filled
in by the model's ``save()``. Statuses are the history clients report: read-only here,
for everyone, and deleted only with their dataset.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from crunch.access import Action, datasets_where, may, projects_where
from crunch.admin.results import ResultInline
from crunch.admin.scoped import (
    FixedOnChange,
    ModelAdmin,
    ModelForm,
    ProjectScoped,
    TabularInline,
    editable_projects,
)
from crunch.exceptions import CrunchError
from crunch.models import (
    Attribute,
    Dataset,
    DatasetQuerySet,
    Item,
    Status,
    default_base_file_path,
    unique_slug,
)  # fmt: skip
from crunch.services import claims, retries
from crunch.services.paths import (
    UnsafePath,
    clean_base_file_path,
    overlap_message,
    overlapping_dataset,
)


class AttributeInline(TabularInline):
    model = Attribute
    extra = 0
    fields = [
        "kind",
        "key",
        "text",
        "integer",
        "number",
        "longitude",
        "boolean",
        "date",
        "datetime",
    ]


class ProjectAttributeInline(AttributeInline):
    fk_name = "project"


class DatasetAttributeInline(AttributeInline):
    fk_name = "dataset"


class ItemAttributeInline(AttributeInline):
    fk_name = "item"


STATUS_FIELDS = ("created", "stage", "state", "note", "hostname", "agent_user")


class StatusInline(TabularInline):
    model = Status
    extra = 0
    can_delete = False
    fields = readonly_fields = STATUS_FIELDS
    ordering = ["-created"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class DatasetForm(ModelForm):
    """The admin applies the API's folder rule: relative, normalised, no other's folder.

    As in the API, a collision names the other dataset only to a user who may view it.
    """

    request: HttpRequest

    def overlap(self, path: str, other: Dataset) -> str:
        return overlap_message(
            path, other, named=may(self.request.user, Action.VIEW, other.project)
        )

    def clean_base_file_path(self) -> str:
        text = self.cleaned_data.get("base_file_path") or ""
        if not text:
            return ""  # save() fills in crunch/<project>/<dataset>
        try:
            path = clean_base_file_path(text)
        except UnsafePath as exc:
            raise forms.ValidationError(str(exc)) from None
        if other := overlapping_dataset(path, exclude_pk=self.instance.pk):
            raise forms.ValidationError(self.overlap(path, other))
        return path

    def clean(self) -> dict[str, Any]:
        """On add, the folder ``save()`` will choose is checked now, as the API does."""
        data: dict[str, Any] = super().clean() or self.cleaned_data
        project = data.get("project")
        if self.instance.pk is None and project is not None and not data.get("base_file_path"):
            slug = unique_slug(Dataset, data.get("name") or "", prefix=f"{project.slug}:")
            path = default_base_file_path(slug)
            if other := overlapping_dataset(path):
                self.add_error("name", self.overlap(path, other))
        return data


@admin.register(Dataset)
class DatasetAdmin(FixedOnChange, ProjectScoped, ModelAdmin):
    scope = "project"
    fixed = ("project",)
    derived = ("slug",)
    form = DatasetForm
    list_display = [
        "slug",
        "project",
        "state",
        "stage",
        "attempts",
        "priority",
        "claim_holder",
        "updated",
    ]
    list_filter = ["state", "project"]
    list_select_related = ["project"]
    search_fields = ["name", "slug", "note"]
    readonly_fields = [
        "state", "stage", "attempts", "note", "finished", "claim_holder", "claim_user",
        "claimed", "heartbeat", "lease_expires",
    ]  # fmt: skip
    exclude = ("claim_id", "claim_key")  # a claim id is its holder's secret
    raw_id_fields = ["project"]
    inlines = [DatasetAttributeInline, ResultInline, StatusInline]
    actions = ["retry_failed", "release_claim"]
    show_full_result_count = False

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    @admin.action(description="Retry failed datasets", permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        count = retries.retry_failed(queryset.filter(project__in=editable_projects(request)))
        self.message_user(
            request, f"{count} failed dataset(s) returned to pending.", messages.SUCCESS
        )

    @admin.action(description="Release claim (return to pending)", permissions=["change"])
    def release_claim(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        released = 0
        mine = queryset.filter(project__in=editable_projects(request))
        for claim_id in mine.running().values_list("claim_id", flat=True):
            if claim_id is None:
                continue  # running datasets always hold a claim; the column is nullable
            try:
                claims.release(claim_id, note=f"Released by {request.user} in the admin.")
                released += 1
            except CrunchError:
                continue  # finished or expired meanwhile: nothing to release
        self.message_user(request, f"{released} claim(s) released.", messages.SUCCESS)


class ItemForm(ModelForm):
    """An item's parent is an item of the same dataset."""

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or self.cleaned_data
        parent, dataset = data.get("parent"), data.get("dataset")
        if parent is not None and dataset is not None and parent.dataset_id != dataset.pk:
            self.add_error("parent", "The parent must be an item of the same dataset.")
        return data


@admin.register(Item)
class ItemAdmin(FixedOnChange, ProjectScoped, ModelAdmin):
    scope = "dataset__project"
    form = ItemForm
    fixed = ("dataset", "parent")
    derived = ("slug",)
    list_display = ["slug", "dataset", "parent"]
    search_fields = ["name", "slug"]
    raw_id_fields = ["dataset", "parent"]
    inlines = [ItemAttributeInline]


@admin.register(Status)
class StatusAdmin(ProjectScoped, ModelAdmin):
    scope = "dataset__project"
    exclude = ("claim_id", "key")
    list_display = ["dataset", "stage", "state", "hostname", "created"]
    list_filter = ["stage", "state"]
    search_fields = ["dataset__slug", "note", "hostname"]
    list_select_related = ["dataset"]
    raw_id_fields = ["dataset", "user"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only with its dataset (the admin asks this of each status deleted with it)."""
        return obj is not None and super().has_delete_permission(request, obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        raise PermissionDenied("Statuses are deleted only with their dataset.")


@admin.register(Attribute)
class AttributeAdmin(FixedOnChange, ProjectScoped, ModelAdmin):
    """An attribute stays on the project, dataset or item it was added to."""

    fixed = ("project", "dataset", "item")
    list_display = ["key", "kind", "project", "dataset", "item"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attribute]:
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        projects = projects_where(request.user, Action.VIEW)
        datasets = datasets_where(request.user, Action.VIEW)
        return queryset.filter(
            Q(project__in=projects) | Q(dataset__in=datasets) | Q(item__dataset__in=datasets)
        )

    list_filter = ["kind"]
    search_fields = ["key"]
    raw_id_fields = ["project", "dataset", "item"]
