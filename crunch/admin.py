"""Admin: actions call the services, so retrying works the same here as in the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from crunch.access import Action, datasets_where, may, project_of, projects_where
from crunch.exceptions import CrunchError
from crunch.models import (
    AccessToken,
    Attribute,
    Dataset,
    DatasetQuerySet,
    Item,
    Project,
    ProjectRole,
    Status,
    WorkflowChange,
)  # fmt: skip
from crunch.services import claims, retries, workflows
from crunch.services.paths import (
    UnsafePath,
    clean_base_file_path,
    overlap_message,
    overlapping_dataset,
)

if TYPE_CHECKING:  # generic only in django-stubs; subscripting them fails at runtime
    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[Any, Any]
    ModelForm = forms.ModelForm[Any]
else:
    ModelAdmin = admin.ModelAdmin
    TabularInline = admin.TabularInline
    ModelForm = forms.ModelForm


class ProjectScoped:
    """Admin pages list what the user may view and change what the user may edit.

    Django's model permissions still apply; crunch's roles narrow them per project.
    ``scope`` is the lookup from the model to its project ("" for Project itself).
    """

    scope = ""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        visible = projects_where(request.user, Action.VIEW)
        return queryset.filter(**{f"{self.scope}__in" if self.scope else "pk__in": visible})

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or may(request.user, Action.EDIT, project_of(obj)))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or may(request.user, Action.EDIT, project_of(obj)))


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


class RoleInline(TabularInline):
    model = ProjectRole
    extra = 0
    raw_id_fields = ["user", "group"]


class WorkflowChangeInline(TabularInline):
    model = WorkflowChange
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created", "user", "sha256", "previous_sha256")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Project)
class ProjectAdmin(ProjectScoped, ModelAdmin):
    list_display = ["name", "slug", "workflow_kind", "max_attempts", "is_public", "created"]
    list_filter = ["workflow_kind", "is_public"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProjectAttributeInline, RoleInline, WorkflowChangeInline]

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        previous = Project.objects.filter(pk=obj.pk).values_list("workflow", flat=True).first()
        super().save_model(request, obj, form, change)
        workflows.record_change(obj, previous=previous if change else None, user=request.user)


@admin.register(ProjectRole)
class ProjectRoleAdmin(ModelAdmin):
    list_display = ["role", "project", "user", "group"]
    list_filter = ["role"]
    search_fields = ["user__username", "group__name", "project__slug"]
    raw_id_fields = ["project", "user", "group"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProjectRole]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        editable = projects_where(request.user, Action.EDIT)
        return queryset.filter(project__in=editable)


@admin.register(AccessToken)
class AccessTokenAdmin(ModelAdmin):
    """Tokens are listed by name and the start of their key; deleting one revokes it."""

    list_display = ["name", "user", "masked", "created", "expires"]
    search_fields = ["name", "user__username"]
    raw_id_fields = ["user"]
    fields = ["user", "name", "expires", "created"]
    readonly_fields = ["created"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessToken]:
        queryset = super().get_queryset(request).select_related("user")
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)


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
    """The admin applies the API's folder rule: relative, normalised, no other's folder."""

    def clean_base_file_path(self) -> str:
        text = self.cleaned_data.get("base_file_path") or ""
        if not text:
            return ""  # save() fills in crunch/<project>/<dataset>
        try:
            path = clean_base_file_path(text)
        except UnsafePath as exc:
            raise forms.ValidationError(str(exc)) from None
        if other := overlapping_dataset(path, exclude_pk=self.instance.pk):
            raise forms.ValidationError(overlap_message(path, other))
        return path


@admin.register(Dataset)
class DatasetAdmin(ProjectScoped, ModelAdmin):
    scope = "project"
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
    inlines = [DatasetAttributeInline, StatusInline]
    actions = ["retry_failed", "release_claim"]
    show_full_result_count = False

    @admin.action(description="Retry failed datasets", permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        count = retries.retry_failed(queryset.filter(project__in=editable(request)))
        self.message_user(
            request, f"{count} failed dataset(s) returned to pending.", messages.SUCCESS
        )

    @admin.action(description="Release claim (return to pending)", permissions=["change"])
    def release_claim(self, request: HttpRequest, queryset: DatasetQuerySet) -> None:
        released = 0
        mine = queryset.filter(project__in=editable(request))
        for claim_id in mine.running().values_list("claim_id", flat=True):
            if claim_id is None:
                continue  # running datasets always hold a claim; the column is nullable
            try:
                claims.release(claim_id, note=f"Released by {request.user} in the admin.")
                released += 1
            except CrunchError:
                continue  # finished or expired meanwhile: nothing to release
        self.message_user(request, f"{released} claim(s) released.", messages.SUCCESS)


def editable(request: HttpRequest) -> QuerySet[Project]:
    return projects_where(request.user, Action.EDIT)


@admin.register(Item)
class ItemAdmin(ProjectScoped, ModelAdmin):
    scope = "dataset__project"
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


@admin.register(Attribute)
class AttributeAdmin(ProjectScoped, ModelAdmin):
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
