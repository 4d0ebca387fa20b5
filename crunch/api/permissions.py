from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

PROCESS_PERMS = ("crunch.change_dataset", "crunch.add_status")
"""What a compute client needs: claim and update datasets, report statuses."""


class CrunchPermission(BasePermission):
    """Any signed-in user reads; writing needs the view's ``required_perms``.

    Views name the Django permissions they need, so staff grant them per user or group
    in the admin (``crunch_token`` puts new users in a group that has them).
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        return bool(user.has_perms(self.required_perms(view)))

    @staticmethod
    def required_perms(view: Any) -> tuple[str, ...]:
        action = getattr(view, "action", None)
        per_action = getattr(view, "action_perms", {})
        if action in per_action:
            return tuple(per_action[action])
        return tuple(getattr(view, "required_perms", PROCESS_PERMS))
