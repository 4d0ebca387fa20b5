"""Notifications and their deliveries: listed, added and changed by the project's maintainers.

Unlike the other models, staff do not even see the notifications of projects they only
view: a webhook's URL is for maintainers. The signing secret is shown once, in the message
after the webhook is added (or its secret renewed), and never on a page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from crunch.access import Action, may
from crunch.admin.scoped import ModelAdmin, TabularInline, editable_projects
from crunch.models import Delivery, DeliveryState, Notification, NotificationKind, Project
from crunch.models.notifications import new_secret


def maintains(request: HttpRequest, project: Project | None) -> bool:
    if request.user.is_superuser:
        return True
    return project is not None and may(request.user, Action.EDIT, project)


def refuse_unless_maintained(request: HttpRequest, project: Project | None) -> None:
    if not maintains(request, project):
        raise PermissionDenied("You may not edit this project's notifications.")


class Maintained:
    """Rows of projects the user maintains; ``scope`` is the lookup to the project."""

    scope = "project"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.scope}__in": editable_projects(request)})


class DeliveryInline(TabularInline):
    model = Delivery
    extra = 0
    max_num = 0
    can_delete = False
    fields = readonly_fields = (
        "event", "state", "created", "attempts", "next_try", "delivered", "last_error",
    )  # fmt: skip
    ordering = ["-created", "-id"]


@admin.register(Notification)
class NotificationAdmin(Maintained, ModelAdmin):
    list_display = ["__str__", "project", "kind", "target", "events", "active", "created"]
    list_filter = ["kind", "active"]
    fields = ["project", "kind", "url", "emails", "on_finished", "on_failed", "on_spike", "active"]
    inlines = [DeliveryInline]
    actions = ["renew_secret"]

    @admin.display(description="sends to")
    def target(self, obj: Notification) -> str:
        return obj.url if obj.kind == NotificationKind.WEBHOOK else obj.emails.replace("\n", ", ")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["project", "kind"] if obj is not None else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        allowed = super().has_add_permission(request)
        return allowed and (request.user.is_superuser or editable_projects(request).exists())

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or maintains(request, obj.project))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or maintains(request, obj.project))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "project" and not request.user.is_superuser:
            kwargs["queryset"] = editable_projects(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        if change:
            refuse_unless_maintained(request, Notification.objects.get(pk=obj.pk).project)
        refuse_unless_maintained(request, obj.project)
        super().save_model(request, obj, form, change)
        if not change and obj.kind == NotificationKind.WEBHOOK:
            show_secret(request, obj)

    def delete_model(self, request: HttpRequest, obj: Notification) -> None:
        refuse_unless_maintained(request, obj.project)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            refuse_unless_maintained(request, obj.project)
        super().delete_queryset(request, queryset)

    @admin.action(description="Give the selected webhooks a new signing secret",
                  permissions=["change"])  # fmt: skip
    def renew_secret(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        for obj in queryset.filter(kind=NotificationKind.WEBHOOK).select_related("project"):
            refuse_unless_maintained(request, obj.project)
            obj.secret = new_secret()
            obj.save(update_fields=["secret"])
            show_secret(request, obj)


def show_secret(request: HttpRequest, obj: Notification) -> None:
    messages.warning(
        request,
        f"The signing secret of {obj}, shown this once: {obj.secret} "
        "(the receiver checks X-Crunch-Signature-256 with it).",
    )


@admin.register(Delivery)
class DeliveryAdmin(Maintained, ModelAdmin):
    """The queue: what was sent, what waits for its next try, what was given up."""

    scope = "notification__project"
    list_display = ["__str__", "event", "state", "attempts", "next_try", "delivered", "created"]
    list_filter = ["state", "event"]
    readonly_fields = (
        "notification", "event", "key", "payload", "state", "created", "attempts", "next_try",
        "delivered", "last_error",
    )  # fmt: skip
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or maintains(request, obj.notification.project))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    @admin.action(description="Send the selected deliveries again", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = queryset.update(
            state=DeliveryState.QUEUED, attempts=0, next_try=timezone.now(), last_error=""
        )
        self.message_user(request, f"{count} delivery(ies) queued again.")
