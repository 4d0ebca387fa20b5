"""The loops that renewed their claims lately, read-only: the renewals write them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from crunch.admin.scoped import ModelAdmin
from crunch.models import Client


@admin.register(Client)
class ClientAdmin(ModelAdmin):
    list_display = ["holder", "user", "slots", "hostname", "slurm_job_id", "last_seen"]
    list_filter = ["last_seen"]
    search_fields = ["holder", "hostname", "slurm_job_id"]
    readonly_fields = [f.name for f in Client._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Client]:
        """A user's own loops; every loop to a superuser (holders name hosts)."""
        clients = super().get_queryset(request).select_related("user")
        return clients if request.user.is_superuser else clients.filter(user_id=request.user.pk)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
