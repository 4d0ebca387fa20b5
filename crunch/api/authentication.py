"""Token authentication against crunch's own tokens, which can expire and be revoked."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.utils import timezone
from rest_framework import authentication, exceptions

from crunch.models import AccessToken
from crunch.services import statements


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``: a crunch token, else a DRF authtoken of older setups."""

    model = AccessToken

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = token_with_user(key)
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


def token_with_user(key: str) -> AccessToken | None:
    """The token of ``key`` with its user, in one hand-written query: every API call runs it."""
    alias = statements.connection_for(AccessToken).alias
    user_model = get_user_model()
    token, user = statements.columns(AccessToken, alias), statements.columns(user_model, alias)
    rows = statements.fetch(token_query(user_model), [key], AccessToken)
    if not rows:
        return None
    found: AccessToken = token.load(rows[0][: token.width], alias)
    found.user = user.load(rows[0][token.width :], alias)
    return found


@cache
def token_query(user_model: type[Model]) -> str:
    """The SELECT of ``token_with_user``, built once per process."""
    alias = statements.connection_for(AccessToken).alias
    token, user = statements.columns(AccessToken, alias), statements.columns(user_model, alias)
    user_pk: Any = user_model._meta.pk
    return (
        f"SELECT {token.sql}, {user.sql} FROM {statements.table(AccessToken)} "
        f"INNER JOIN {statements.table(user_model)} ON {statements.column(AccessToken, 'user')} "
        f"= {statements.column(user_model, user_pk.name)} "
        f"WHERE {statements.column(AccessToken, 'key')} = %s"
    )
