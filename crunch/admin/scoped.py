"""The one access rule of the admin: staff act only on projects they may edit.

Django's model permissions still apply; crunch's roles narrow them per project. A change
is checked twice: the project the object is in now, and the project it is in after the
change, so nothing is placed or moved where the user has no role. Superusers may do
everything, as in the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from crunch.access import Action, datasets_where, may, project_of, projects_where
from crunch.models import Dataset, Item, Project, ProjectRole

if TYPE_CHECKING:  # generic only in django-stubs; subscripting them fails at runtime
    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[Any, Any]
    ModelForm = forms.ModelForm[Any]
else:
    ModelAdmin = admin.ModelAdmin
    TabularInline = admin.TabularInline
    ModelForm = forms.ModelForm


def editable_projects(request: HttpRequest) -> QuerySet[Project]:
    return projects_where(request.user, Action.EDIT)


def editable(request: HttpRequest, model: type[Model]) -> QuerySet[Any]:
    """The rows of ``model`` (a project, dataset or item) the user may edit."""
    if model is Project:
        return editable_projects(request)
    datasets = datasets_where(request.user, Action.EDIT)
    if model is Dataset:
        return datasets
    if model is Item:
        return Item.objects.filter(dataset__in=datasets)
    raise TypeError(f"{model.__name__} is not a project, dataset or item.")


def may_edit(request: HttpRequest, obj: Any) -> bool:
    """Whether the user may edit the project of ``obj``; a role on every project: superusers."""
    if request.user.is_superuser:
        return True
    project = obj.project if isinstance(obj, ProjectRole) else project_of(obj)
    return project is not None and may(request.user, Action.EDIT, project)


def refuse_unless_editable(request: HttpRequest, obj: Any) -> None:
    """403 unless the user may edit the object's project (the last line: forms check first)."""
    if not may_edit(request, obj):
        raise PermissionDenied("You may not edit this project.")


class ProjectScoped:
    """Admin pages list what the user may view and add, change or delete what the user may edit.

    ``scope`` is the lookup from the model to its project ("" for Project itself). The
    foreign keys to projects, datasets and items offer only editable ones, so a form names
    the refusal; ``save_model`` and ``delete_model`` check again, before and after.
    """

    scope = ""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        visible = projects_where(request.user, Action.VIEW)
        return queryset.filter(**{f"{self.scope}__in" if self.scope else "pk__in": visible})

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        allowed = super().has_add_permission(request, *args)  # type: ignore[misc]
        if not allowed or request.user.is_superuser:
            return bool(allowed)
        return editable_projects(request).exists()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or may_edit(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)  # type: ignore[misc]
        return bool(allowed) and (obj is None or may_edit(request, obj))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        target = db_field.related_model
        if not request.user.is_superuser and target in (Project, Dataset, Item):
            kwargs["queryset"] = editable(request, target)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            refuse_unless_editable(request, type(obj)._default_manager.get(pk=obj.pk))
        refuse_unless_editable(request, obj)
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        refuse_unless_editable(request, obj)
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            refuse_unless_editable(request, obj)
        super().delete_queryset(request, queryset)  # type: ignore[misc]


class FixedOnChange:
    """Fields that may be set when an object is added and never changed afterwards.

    ``fixed`` are read-only on change; ``derived`` (the slug, which ``save()`` fills in
    from the name and the owner's slug) are left out on add and read-only on change.
    """

    fixed: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return [*fields, *self.fixed, *self.derived] if obj is not None else fields

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        excluded = list(super().get_exclude(request, obj) or ())  # type: ignore[misc]
        return excluded + list(self.derived) if obj is None else excluded

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))  # type: ignore[misc]
        return [name for name in fields if name not in self.derived] if obj is None else fields
