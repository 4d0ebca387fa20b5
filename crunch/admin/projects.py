"""Projects, the roles on them and the users' API tokens.

What only a superuser may do here: grant a role on every project (``project`` empty),
grant or change a role on a project they do not maintain, and create a token for
another user. A token's user never changes once it is created, whoever asks.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from crunch.access import grant, may_create_projects
from crunch.admin.datasets import ProjectAttributeInline
from crunch.admin.results import ResultKeyInline
from crunch.admin.scoped import (
    FixedOnChange,
    ModelAdmin,
    ModelForm,
    ProjectScoped,
    TabularInline,
    editable_projects,
)
from crunch.choices import Role
from crunch.models import AccessToken, Project, ProjectRole, WorkflowChange
from crunch.services import workflows


class RoleInline(TabularInline):
    """The project's roles; the project is the one the page edits, which the user may edit."""

    model = ProjectRole
    extra = 0
    raw_id_fields = ["user", "group"]


class WorkflowChangeInline(TabularInline):
    model = WorkflowChange
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "created", "user", "sha256", "previous_sha256", "container", "previous_container",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Project)
class ProjectAdmin(FixedOnChange, ProjectScoped, ModelAdmin):
    """A project's slug is fixed once made: its datasets' slugs and folders carry it."""

    fixed = ("slug",)
    list_display = [
        "name", "slug", "workflow_kind", "container", "max_attempts", "is_public", "paused",
        "created",
    ]  # fmt: skip
    list_filter = ["workflow_kind", "is_public", "paused"]
    search_fields = ["name", "slug", "description"]
    inlines = [ProjectAttributeInline, ResultKeyInline, RoleInline, WorkflowChangeInline]

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {"slug": ["name"]} if obj is None else {}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        """Whoever may create projects in the API: see crunch.access.may_create_projects."""
        return ModelAdmin.has_add_permission(self, request) and may_create_projects(request.user)

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        stored = Project.objects.filter(pk=obj.pk).values_list("workflow", "container").first()
        if change:
            super().save_model(request, obj, form, change)
        else:
            ModelAdmin.save_model(self, request, obj, form, change)
            if not request.user.is_superuser:  # as the API: the creator maintains it
                grant(Role.MAINTAINER, project=obj, user=request.user)
        previous, container = stored if change and stored else (None, "")
        workflows.record_change(
            obj, previous=previous, previous_container=container, user=request.user
        )


class RoleForm(ModelForm):
    """Only superusers grant a role on every project; the project list offers the others
    only the projects they may edit (``ProjectScoped.formfield_for_foreignkey``)."""

    request: HttpRequest

    def clean_project(self) -> Project | None:
        project: Project | None = self.cleaned_data.get("project")
        if project is None and not self.request.user.is_superuser:
            raise forms.ValidationError("Only a superuser may grant a role on every project.")
        return project


@admin.register(ProjectRole)
class ProjectRoleAdmin(ProjectScoped, ModelAdmin):
    """Roles on the projects the user may edit: listed, added, changed and deleted there."""

    form = RoleForm
    list_display = ["role", "project", "user", "group"]
    list_filter = ["role"]
    search_fields = ["user__username", "group__name", "project__slug"]
    raw_id_fields = ["project", "user", "group"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProjectRole]:
        queryset = ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(project__in=editable_projects(request))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"request": request})


@admin.register(AccessToken)
class AccessTokenAdmin(ModelAdmin):
    """Tokens are listed by name and the start of their key; deleting one revokes it.

    Staff see, add and delete only their own tokens; only a superuser names the user a
    new token is for. Nobody changes a token's user: the key would act as someone else.
    """

    list_display = ["name", "user", "masked", "created", "expires"]
    search_fields = ["name", "user__username"]
    raw_id_fields = ["user"]
    fields = ["user", "name", "expires", "created"]
    readonly_fields = ["created"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessToken]:
        queryset = super().get_queryset(request).select_related("user")
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None and not request.user.is_superuser:
            return ["name", "expires"]  # the token is the user's own
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "user"] if obj is not None else fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and own_or_superuser(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and own_or_superuser(request, obj)

    def save_model(self, request: HttpRequest, obj: AccessToken, form: Any, change: bool) -> None:
        if change:
            stored = AccessToken.objects.get(pk=obj.pk)
            if stored.user_id != obj.user_id or not own_or_superuser(request, stored):
                raise PermissionDenied("A token's user never changes.")
        elif not request.user.is_superuser:
            obj.user_id = request.user.pk  # type: ignore[assignment]  # staff are signed in
        super().save_model(request, obj, form, change)
        if not change and obj.key:
            # Shown once: only the key's digest is stored (crunch/tokens.py).
            messages.warning(
                request,
                f"The key of {obj}: {obj.key} (copy it now: it is not stored and is shown only "
                "this once).",
            )


def own_or_superuser(request: HttpRequest, token: AccessToken | None) -> bool:
    return token is None or request.user.is_superuser or token.user_id == request.user.pk
