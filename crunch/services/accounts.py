"""API users and their tokens: what ``crunch_token`` and the tests create."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from crunch.access import grant
from crunch.choices import Role
from crunch.exceptions import CrunchError
from crunch.models import AccessToken, Project


class UnknownProject(CrunchError):
    """No project has that slug."""


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    key: str
    user: Any
    created_user: bool
    expires: datetime.datetime | None


def issue_token(
    username: str,
    *,
    role: Role | str = Role.WORKER,
    projects: Sequence[str] = (),
    expires_days: float | None = None,
    name: str = "",
) -> IssuedToken:
    """Create the user if needed, grant ``role`` on ``projects`` (none: all), issue a token."""
    found = list(Project.objects.filter(slug__in=projects))
    missing = sorted(set(projects) - {project.slug for project in found})
    if missing:
        raise UnknownProject(f"No project has the slug {missing[0]!r}.")
    user, created = get_user_model()._default_manager.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    targets: list[Project | None] = list(found) or [None]
    for project in targets:
        grant(role, project=project, user=user)
    expires = None
    if expires_days is not None:
        expires = timezone.now() + datetime.timedelta(days=expires_days)
    _, key = create_token(user, name=name or f"{role} token", expires=expires)
    return IssuedToken(key=key, user=user, created_user=created, expires=expires)


def create_token(
    user: Any, *, name: str = "", expires: datetime.datetime | None = None
) -> tuple[AccessToken, str]:
    """A new token of ``user`` and its key: the only time the key is known, so show it now.

    Only the key's digest is stored (crunch/tokens.py). The admin saves its tokens itself;
    the key is then ``token.key`` on the instance it saved, for the page that follows.
    """
    token = AccessToken.objects.create(user=user, name=name, expires=expires)
    assert token.key is not None
    return token, token.key


def client_token(username: str) -> tuple[str, bool]:
    """A site-wide worker token for ``username`` (the 0.1 behaviour of ``crunch_token``)."""
    issued = issue_token(username, role=Role.WORKER)
    return issued.key, issued.created_user
