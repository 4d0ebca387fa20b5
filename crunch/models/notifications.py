"""Word when a project needs a person: its notifications, their queue of deliveries, and
where the notifier's scan of the project stopped.

Nothing here is written by a client's request: ``crunch.services.notifications.scan``
finds the events and fills the queue, ``deliver`` empties it (``manage.py crunch_notify``).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crunch.models.base import check_constraint
from crunch.models.projects import Project

URL_MAX = 2000
EMAILS_MAX = 20


class NotificationKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (signed JSON POST)"
    EMAIL = "email", "E-mail"


class Event(models.TextChoices):
    """What a notification may fire on."""

    FINISHED = "finished", "The project finished (nothing pending or running)"
    FAILED = "failed", "Datasets failed for good (attempts spent, or not retried)"
    SPIKE = "spike", "Failures spiking (at least half of the last runs failed)"


class DeliveryState(models.TextChoices):
    QUEUED = "queued", "Queued"
    DELIVERED = "delivered", "Delivered"
    GIVEN_UP = "given-up", "Given up"


webhook_url = URLValidator(
    schemes=["http", "https"], message="Give an http:// or https:// URL for the webhook."
)


def new_secret() -> str:
    """A webhook's signing secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def split_emails(text: str) -> list[str]:
    """The addresses of an e-mail notification: separated by commas, spaces or lines."""
    return [part for part in text.replace(",", " ").split() if part]


def email_list(text: str) -> None:
    addresses = split_emails(text)
    if len(addresses) > EMAILS_MAX:
        raise ValidationError(f"Give at most {EMAILS_MAX} addresses.", code="too-many")
    for address in addresses:
        validate_email(address)


class Notification(models.Model):
    """Where a project's events go: a signed webhook or e-mail, for some of the events.

    The webhook's URL and secret are shown to the project's maintainers only; the secret
    only once, to whoever creates it. It is kept in clear: the server signs with it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    url = models.CharField(
        max_length=URL_MAX, blank=True, default="", validators=[webhook_url],
        help_text="The webhook's http(s) URL; each event is POSTed to it as signed JSON.",
    )  # fmt: skip
    secret = models.CharField(max_length=128, default=new_secret, editable=False)
    emails = models.TextField(
        blank=True, default="", validators=[email_list],
        help_text="The e-mail notification's addresses, separated by commas or lines.",
    )  # fmt: skip
    on_finished = models.BooleanField(default=True, help_text=Event.FINISHED.label)
    on_failed = models.BooleanField(default=True, help_text=Event.FAILED.label)
    on_spike = models.BooleanField(default=True, help_text=Event.SPIKE.label)
    active = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            check_constraint(
                name="crunch_notification_target",
                condition=Q(kind=NotificationKind.WEBHOOK, emails="") & ~Q(url="")
                | Q(kind=NotificationKind.EMAIL, url="") & ~Q(emails=""),
            )
        ]

    def __str__(self) -> str:
        target = "webhook" if self.kind == NotificationKind.WEBHOOK else "e-mail"
        return f"{self.project} {target} #{self.pk}"

    def clean(self) -> None:
        if self.kind == NotificationKind.WEBHOOK:
            if not self.url:
                raise ValidationError({"url": "A webhook needs its URL."})
            self.emails = ""
        elif self.kind == NotificationKind.EMAIL:
            if not split_emails(self.emails):
                raise ValidationError({"emails": "An e-mail notification needs an address."})
            self.url = ""
        if not self.events:
            raise ValidationError("Choose at least one event.")

    @property
    def events(self) -> list[str]:
        return [
            str(event)
            for event, on in (
                (Event.FINISHED, self.on_finished),
                (Event.FAILED, self.on_failed),
                (Event.SPIKE, self.on_spike),
            )
            if on
        ]

    def set_events(self, events: list[str]) -> None:
        self.on_finished = Event.FINISHED in events
        self.on_failed = Event.FAILED in events
        self.on_spike = Event.SPIKE in events


EVENT_FIELD = {Event.FINISHED: "on_finished", Event.FAILED: "on_failed", Event.SPIKE: "on_spike"}
"""The notification's field that subscribes it to an event."""


class Delivery(models.Model):
    """One event for one notification: the queue the notifier sends from, with retries.

    ``key`` names the event, so scanning twice enqueues it once.
    """

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=16, choices=Event.choices)
    key = models.CharField(max_length=200)
    payload: models.JSONField[Any] = models.JSONField()
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.QUEUED
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    next_try = models.DateTimeField(default=timezone.now)
    delivered = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "key"], name="crunch_delivery_key")
        ]
        indexes = [models.Index(fields=["state", "next_try"], name="crunch_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} to {self.notification}"


class Watch(models.Model):
    """How far the notifier has looked at a project: what it already reported.

    One row per project with notifications; locked while a notifier scans the project, so
    two notifiers never report the same event twice.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="watch")
    failed_until = models.DateTimeField(
        help_text="Datasets that failed for good up to this time were reported."
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="The last dataset's end when 'finished' last fired."
    )
    spike_at = models.DateTimeField(null=True, blank=True, help_text="When 'spike' last fired.")
    spike_run = models.DateTimeField(
        null=True, blank=True, help_text="The end of the newest run the last spike counted."
    )
    last_end = models.DateTimeField(
        null=True, blank=True, help_text="The latest dataset end the last spike check saw."
    )

    def __str__(self) -> str:
        return f"watch of {self.project}"
