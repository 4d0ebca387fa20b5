"""API token keys at rest: only a SHA-256 digest of each key and its first characters are kept.

A key is 160 random bits (``secrets.token_hex(20)``), so no one can find a key from its
digest by trying candidates, and two keys never share a digest. Salts and slow hashes
protect passwords, which people choose from a small space; a random key needs neither.
So the digest can be a plain indexed, unique column: a call's token is one index lookup
of ``digest(key)``, and hashing costs about a microsecond.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.db import models

KEY_BYTES = 20
PREFIX_LENGTH = 4
"""Characters of a key kept in clear, so that the admin can tell tokens apart."""


def new_key() -> str:
    return secrets.token_hex(KEY_BYTES)


def digest(key: str) -> str:
    """The stored form of ``key``: its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


class KeyDerivedField(models.CharField):  # type: ignore[type-arg]
    """A column computed from a token's key (its digest or its prefix).

    A new token that has none gets a fresh key here, when it is first saved: ``save()`` and
    ``bulk_create()`` both call ``pre_save``, so every way of creating a token makes a key,
    and the clear key stays on that instance only (``token.key``), to be shown once.
    """

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        if add and not model_instance.digest:
            model_instance.set_key(new_key())
        return super().pre_save(model_instance, add)
