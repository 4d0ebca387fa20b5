"""Admin: actions call the services, so retrying works the same here as in the API."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from crunch.exceptions import CrunchError
from crunch.models import Attribute, Dataset, DatasetQuerySet, Item, Project, Status
from crunch.services import claims, retries


class AttributeInline(admin.TabularInline):
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


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "workflow_kind", "max_attempts", "is_public", "created"]
    list_filter = ["workflow_kind", "is_public"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProjectAttributeInline]


STATUS_FIELDS = ("created", "stage", "state", "note", "hostname", "agent_user")


class StatusInline(admin.TabularInline):
    model = Status
    extra = 0
    can_delete = False
    fields = readonly_fields = STATUS_FIELDS
    ordering = ["-created"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
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
        "state", "stage", "attempts", "note", "finished", "claim_id", "claim_holder", "claim_user",
        "claimed", "heartbeat", "lease_expires",
    ]  # fmt: skip
    raw_id_fields = ["project"]
    inlines = [DatasetAttributeInline, StatusInline]
    actions = ["retry_failed", "release_claim"]
    show_full_result_count = False

    @admin.action(description="Retry failed datasets", permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        count = retries.retry_failed(queryset)
        self.message_user(
            request, f"{count} failed dataset(s) returned to pending.", messages.SUCCESS
        )

    @admin.action(description="Release claim (return to pending)", permissions=["change"])
    def release_claim(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        released = 0
        for claim_id in queryset.running().values_list("claim_id", flat=True):
            if claim_id is None:
                continue  # running datasets always hold a claim; the column is nullable
            try:
                claims.release(claim_id, note=f"Released by {request.user} in the admin.")
                released += 1
            except CrunchError:
                continue  # finished or expired meanwhile: nothing to release
        self.message_user(request, f"{released} claim(s) released.", messages.SUCCESS)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["slug", "dataset", "parent"]
    search_fields = ["name", "slug"]
    raw_id_fields = ["dataset", "parent"]
    inlines = [ItemAttributeInline]


@admin.register(Status)
class StatusAdmin(admin.ModelAdmin):
    list_display = ["dataset", "stage", "state", "hostname", "created"]
    list_filter = ["stage", "state"]
    search_fields = ["dataset__slug", "note", "hostname"]
    list_select_related = ["dataset"]
    raw_id_fields = ["dataset", "user"]
    show_full_result_count = False


@admin.register(Attribute)
class AttributeAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "project", "dataset", "item"]
    list_filter = ["kind"]
    search_fields = ["key"]
    raw_id_fields = ["project", "dataset", "item"]
