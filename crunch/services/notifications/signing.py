"""The webhook's signature: HMAC-SHA256 of the raw body with the notification's secret.

Sent as ``X-Crunch-Signature-256: sha256=<hex>``, the shape of GitHub's
``X-Hub-Signature-256``, so receivers written for GitHub verify it the same way.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Crunch-Signature-256"
EVENT_HEADER = "X-Crunch-Event"
DELIVERY_HEADER = "X-Crunch-Delivery"


def signature(secret: str, body: bytes) -> str:
    """The header's value for ``body``: ``sha256=`` and the hex digest."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (a constant-time comparison)."""
    return hmac.compare_digest(signature(secret, body), header)
