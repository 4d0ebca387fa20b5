"""API users for compute clients."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token

CLIENT_GROUP = "crunch clients"
CLIENT_PERMISSIONS = [
    f"{verb}_{model}"
    for model in ("project", "dataset", "item", "attribute", "status")
    for verb in ("add", "change", "view")
]


def client_group() -> Group:
    """The group whose members may create datasets, claim them and report statuses."""
    group, _ = Group.objects.get_or_create(name=CLIENT_GROUP)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="crunch", codename__in=CLIENT_PERMISSIONS
        )
    )
    return group


def client_token(username: str) -> tuple[str, bool]:
    """Return an API token for ``username``, creating the user in the client group if needed."""
    user, created = get_user_model()._default_manager.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(client_group())
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, created
