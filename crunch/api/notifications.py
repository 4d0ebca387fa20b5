"""A project's notifications in the API: ``api/projects/<slug>/notifications/``.

Maintainers only, reads included: a webhook's URL is never shown to workers or viewers.
As elsewhere, a project the user may not see answers 404, one they may only see 403, and
anonymous requests 401. The signing secret is in the answer that creates the webhook,
and in no answer after it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from crunch.access import Action, projects_where
from crunch.api.permissions import require
from crunch.api.views import CrunchAPI
from crunch.models import Event, Notification, NotificationKind, Project
from crunch.models.notifications import EMAILS_MAX, URL_MAX, split_emails, webhook_url


class NotificationSerializer(serializers.Serializer[Notification]):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=NotificationKind.choices)
    url = serializers.CharField(
        max_length=URL_MAX, required=False, allow_blank=True, validators=[webhook_url],
        help_text="The webhook's http(s) URL (kind webhook).",
    )  # fmt: skip
    emails = serializers.ListField(
        child=serializers.EmailField(max_length=254), max_length=EMAILS_MAX, required=False,
        help_text="The addresses (kind email).",
    )  # fmt: skip
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), min_length=1, max_length=3,
        required=False, help_text="What it fires on; all three when left out.",
    )  # fmt: skip
    active = serializers.BooleanField(required=False, default=True)
    created = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: Notification) -> dict[str, Any]:
        return {
            "id": instance.pk, "kind": instance.kind, "url": instance.url,
            "emails": split_emails(instance.emails), "events": instance.events,
            "active": instance.active, "created": instance.created.isoformat(),
        }  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        if current is not None and attrs.get("kind", current.kind) != current.kind:
            raise serializers.ValidationError({"kind": "A notification's kind never changes."})
        kind = attrs.get("kind") or (current.kind if current else "")
        url = attrs.get("url", current.url if current else "")
        emails = attrs.get("emails", split_emails(current.emails) if current else [])
        if kind == NotificationKind.WEBHOOK and (not url or emails):
            raise serializers.ValidationError({"url": "A webhook gives its url and no emails."})
        if kind == NotificationKind.EMAIL and (url or not emails):
            raise serializers.ValidationError(
                {"emails": "An e-mail notification gives its emails and no url."}
            )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Notification:
        notification = Notification(project=self.context["project"], kind=validated_data["kind"])
        return self.update(notification, validated_data)

    def update(self, instance: Notification, validated_data: dict[str, Any]) -> Notification:
        if "url" in validated_data:
            instance.url = validated_data["url"]
        if "emails" in validated_data:
            instance.emails = "\n".join(validated_data["emails"])
        if "events" in validated_data or instance.pk is None:
            instance.set_events(validated_data.get("events") or list(Event.values))
        if "active" in validated_data:
            instance.active = validated_data["active"]
        instance.save()
        return instance


class CreatedNotificationSerializer(NotificationSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The webhook's signing secret (HMAC-SHA256 key), shown in this answer only.",
    )


PROJECT = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The project's slug.")


@extend_schema_view(
    list=extend_schema(parameters=[PROJECT], description="The project's notifications."),
    create=extend_schema(
        parameters=[PROJECT], request=NotificationSerializer,
        responses={201: CreatedNotificationSerializer},
        description="Add a webhook or e-mail notification; a webhook's answer holds its "
        "signing secret, shown this once.",
    ),
    retrieve=extend_schema(parameters=[PROJECT], description="One notification."),
    partial_update=extend_schema(
        parameters=[PROJECT],
        description="Change a notification's url, emails, events or active (not its kind).",
    ),
    destroy=extend_schema(parameters=[PROJECT], description="Remove a notification and its queue."),
)  # fmt: skip
class NotificationViewSet(
    CrunchAPI,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Notification],
):
    """Webhooks and e-mail of a project; maintainers only."""

    serializer_class = NotificationSerializer
    permission_classes = [IsAuthenticated]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    project: Project

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        found = projects_where(request.user, Action.VIEW).filter(slug=kwargs.get("slug")).first()
        if found is None:
            raise NotFound("No such object.")
        require(request.user, Action.EDIT, found)
        self.project = found

    def get_queryset(self) -> QuerySet[Notification]:
        if getattr(self, "swagger_fake_view", False):  # the schema's generation
            return Notification.objects.none()
        return Notification.objects.filter(project=self.project)

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "project"):
            context["project"] = self.project
        return context

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        notification = serializer.save()
        shown = dict(serializer.data)
        if notification.kind == NotificationKind.WEBHOOK:
            shown["secret"] = notification.secret
        return Response(shown, status=status.HTTP_201_CREATED)
