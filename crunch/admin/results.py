"""Results in the admin: read only. Workflows report them and ``services.results.store``
checks them; a hand edit could break the project's schema, so the admin only shows them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from crunch.admin.scoped import TabularInline
from crunch.models import Result, ResultKey
from crunch.services.result_export import json_value


class ReadOnlyInline(TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ResultInline(ReadOnlyInline):
    """A dataset's results."""

    model = Result
    fields = readonly_fields = ("key", "shown", "updated")
    ordering = ["key__name"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("key")

    @admin.display(description="value")
    def shown(self, result: Result) -> str:
        return str(json_value(result.value))


class ResultKeyInline(ReadOnlyInline):
    """A project's result schema: each key and the kind its first value fixed."""

    model = ResultKey
    verbose_name = "result key"
    fields = readonly_fields = ("name", "kind", "created")
    ordering = ["name"]
