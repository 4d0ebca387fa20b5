"""Token authentication against crunch's own tokens, which can expire and be revoked.

Tokens are found by the SHA-256 of their key (crunch/tokens.py). Failed authentications
are counted per client address, and an address that fails too often is refused for a
while (429, with Retry-After): see ``FailedTokenThrottle``.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request

from crunch import tokens
from crunch.conf import crunch_settings
from crunch.db import statements
from crunch.models import AccessToken


class FailedTokenThrottle(throttling.SimpleRateThrottle):
    """Failed token authentications of one client address, DRF's way (``SimpleRateThrottle``).

    The address is DRF's ``get_ident``: REMOTE_ADDR, or X-Forwarded-For as its setting
    NUM_PROXIES says. Only failures are counted, so a worker whose token is good is never
    throttled, however fast it calls. Past ``CRUNCH_TOKEN_FAILURE_RATE`` failures, every
    token from that address is refused, good ones too (else a right guess would still get
    through), until the oldest failure leaves the window. The history lives in the default
    cache: with one local-memory cache per server process, each process counts on its own.
    """

    scope = "crunch_token_failures"
    num_requests: int | None  # parsed from the rate by SimpleRateThrottle.__init__
    duration: int | None

    def get_rate(self) -> str | None:
        return crunch_settings.TOKEN_FAILURE_RATE

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def locked(self, request: Request) -> bool:
        """Whether ``request``'s address has failed too often: one cache read, no write."""
        if self.num_requests is None or self.duration is None:
            return False
        self.key = self.get_cache_key(request, None)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def refusal(self) -> exceptions.Throttled:
        return exceptions.Throttled(
            self.wait(),
            detail="Too many failed token authentications from this address.",
            code="auth_throttled",
        )


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``: a crunch token (the keys of DRF's authtoken app were
    moved to crunch tokens by migration 0008), refused while its address is throttled."""

    model = AccessToken

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request)
        if not header[:6].lower().startswith(b"token"):
            return None  # another scheme, or none: not counted, not checked
        throttle = FailedTokenThrottle()
        if throttle.locked(request):
            raise throttle.refusal()
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            no_view: Any = None
            if not throttle.allow_request(request, no_view):  # counts this failure
                raise throttle.refusal() from None
            raise

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = token_with_user(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.expires is not None and token.expires <= timezone.now():
            when = token.expires.astimezone(datetime.UTC)
            raise exceptions.AuthenticationFailed(
                f"The token expired on {when:%Y-%m-%d %H:%M:%S} UTC."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        return token.user, token


def token_with_user(key: str) -> AccessToken | None:
    """The token of ``key`` with its user, in one hand-written query (crunch.db's
    ``token_with_user``): every API call runs it."""
    return statements.token_with_user(tokens.digest(key))
