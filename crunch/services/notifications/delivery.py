"""Sending the queued deliveries: signed webhooks and e-mail, retried with backoff.

``deliver(now)`` claims the due deliveries (skipping rows another notifier has locked, on
PostgreSQL; a conditional update elsewhere), holds each for ``LEASE`` while it sends, then
records the outcome: delivered, tried again later (the wait doubling from
NOTIFY_RETRY_DELAY up to NOTIFY_RETRY_MAX), or given up after NOTIFY_MAX_ATTEMPTS tries.
A notifier that dies mid-send leaves its deliveries to be sent again after the lease: a
receiver may see a delivery twice (its ``X-Crunch-Delivery`` id tells), never lose one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import smtplib

import requests
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F

import crunch
from crunch.conf import crunch_settings
from crunch.models import Delivery, DeliveryState, NotificationKind
from crunch.models.notifications import split_emails
from crunch.services.notifications import addresses
from crunch.services.notifications.payloads import email_of
from crunch.services.notifications.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    signature,
)

logger = logging.getLogger(__name__)
LEASE = datetime.timedelta(minutes=5)
"""A claimed delivery is not claimed again before this: longer than any send takes."""
ERROR_MAX = 1000
ANSWER_READ = 500
"""Bytes of a receiver's refusal kept in ``last_error``."""


@dataclasses.dataclass
class Sent:
    """What one ``deliver`` call did."""

    delivered: int = 0
    retried: int = 0
    given_up: int = 0


def deliver(now: datetime.datetime, *, limit: int = 100) -> Sent:
    """Send up to ``limit`` due deliveries and record each outcome."""
    sent = Sent()
    for delivery in claim_due(now, limit):
        error = send(delivery)
        outcome = record(delivery, error, now)
        setattr(sent, outcome, getattr(sent, outcome) + 1)
    return sent


def body_of(delivery: Delivery) -> bytes:
    """The exact bytes POSTed and signed."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def claim_due(now: datetime.datetime, limit: int) -> list[Delivery]:
    """The due deliveries of active notifications, each held for ``LEASE`` by this notifier."""
    claimed = []
    with transaction.atomic():
        due = (
            Delivery.objects.filter(
                state=DeliveryState.QUEUED, next_try__lte=now, notification__active=True
            )
            .select_related("notification")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_try", "id")
        )
        for delivery in due[:limit]:
            held = Delivery.objects.filter(
                pk=delivery.pk, state=DeliveryState.QUEUED, next_try=delivery.next_try
            ).update(next_try=now + LEASE, attempts=F("attempts") + 1)
            if held:  # another notifier did not take it meanwhile (SQLite has no row lock)
                delivery.attempts += 1
                claimed.append(delivery)
    return claimed


def send(delivery: Delivery) -> str:
    """Send one delivery; the error that stopped it, or "" when it arrived."""
    notification = delivery.notification
    try:
        if notification.kind == NotificationKind.EMAIL:
            subject, text = email_of(delivery.payload)
            send_mail(subject, text, None, split_emails(notification.emails))
            return ""
        return post(delivery)
    except (requests.RequestException, smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bad delivery must not stop the queue behind it
        logger.exception("Delivery %s could not be sent", delivery.pk)
        return f"{type(exc).__name__}: {exc}"


def post(delivery: Delivery) -> str:
    """POST a webhook's signed body; "" for a 2xx answer, else what went wrong."""
    notification = delivery.notification
    refused = addresses.refused_address(notification.url)
    if refused:
        return refused
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"crunch/{crunch.__version__}",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.pk),
        SIGNATURE_HEADER: signature(notification.secret, body),
    }
    with addresses.session() as session:
        try:
            response = session.post(
                notification.url,
                data=body,
                headers=headers,
                timeout=crunch_settings.NOTIFY_TIMEOUT,
                allow_redirects=False,
                stream=True,
            )
        except requests.ConnectionError as exc:
            if refused := addresses.refusal_of(exc):
                return refused
            raise
        with response:
            if 200 <= response.status_code < 300:
                return ""
            answer = response.raw.read(ANSWER_READ, decode_content=True).decode(errors="replace")
            where = response.headers.get("Location", "")
            moved = f" (redirected to {where}: give the final URL)" if where else ""
            return f"HTTP {response.status_code}{moved}: {answer.strip()}"


def backoff(attempts: int) -> datetime.timedelta:
    """The wait after the ``attempts``-th failed try."""
    delay = crunch_settings.NOTIFY_RETRY_DELAY * 2 ** max(attempts - 1, 0)
    return datetime.timedelta(seconds=min(delay, crunch_settings.NOTIFY_RETRY_MAX))


def record(delivery: Delivery, error: str, now: datetime.datetime) -> str:
    """Store a try's outcome; return which of ``Sent``'s counts it adds to."""
    row = Delivery.objects.filter(pk=delivery.pk)
    if not error:
        row.update(state=DeliveryState.DELIVERED, delivered=now, last_error="")
        return "delivered"
    error = error[:ERROR_MAX]
    logger.warning("Delivery %s (%s) failed: %s", delivery.pk, delivery.event, error)
    if delivery.attempts >= crunch_settings.NOTIFY_MAX_ATTEMPTS:
        row.update(state=DeliveryState.GIVEN_UP, last_error=error)
        return "given_up"
    row.update(next_try=now + backoff(delivery.attempts), last_error=error)
    return "retried"
