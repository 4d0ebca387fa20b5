"""Token authentication against crunch's own tokens, which can expire and be revoked."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.utils import timezone
from rest_framework import authentication, exceptions

from crunch.models import AccessToken


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``: a crunch token, else a DRF authtoken of older setups."""

    model = AccessToken

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = AccessToken.objects.select_related("user").filter(key=key).first()
        if token is None:
            return self.legacy_credentials(key)
        if token.expires is not None and token.expires <= timezone.now():
            raise exceptions.AuthenticationFailed("The token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        return token.user, token

    def legacy_credentials(self, key: str) -> tuple[Any, Any]:
        if not apps.is_installed("rest_framework.authtoken"):
            raise exceptions.AuthenticationFailed("Invalid token.")
        from rest_framework.authtoken.models import Token

        token = Token.objects.select_related("user").filter(key=key).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return token.user, token
