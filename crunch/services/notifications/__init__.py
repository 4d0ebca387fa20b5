"""Word when a project needs a person: events found by a scan, deliveries sent from a queue.

``manage.py crunch_notify`` runs both beside the server; a host project may call them from
its own scheduler instead. Nothing here runs inside a client's request.
"""

from __future__ import annotations

import datetime

from django.utils import timezone

from crunch.services.notifications.delivery import Sent, deliver
from crunch.services.notifications.events import scan
from crunch.services.notifications.signing import signature, verify

__all__ = ["Sent", "deliver", "notify", "scan", "signature", "verify"]


def notify(now: datetime.datetime | None = None) -> tuple[int, Sent]:
    """One round: queue the new events, then send what is due. How many queued, and sent."""
    now = now or timezone.now()
    return scan(now), deliver(now)
