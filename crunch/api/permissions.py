"""The API's side of crunch.access: which action a request is, and whether it may.

Reads are open to whoever may view the project (querysets are filtered, so a private
project answers 404). Every write names its action; the view's object (or, on create,
the object the body refers to) decides the project.
"""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from crunch.access import Action, may, project_of
from crunch.models import Project
from crunch.services.claims import held_by


class ProjectAccess(BasePermission):
    """Writes need a signed-in user; objects need the action the view names for them."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if not (request.user and request.user.is_authenticated):
            return False
        if claim_id := getattr(view, "kwargs", {}).get("claim_id"):
            require_claim_rights(request.user, claim_id)
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        require(request.user, action_of(request, view), project_of(obj))
        return True


def require_claim_rights(user: Any, claim_id: str) -> None:
    """Renewing or releasing a claim the user holds needs the worker role still.

    A user whose role was taken away keeps no claim alive. A claim the user does not hold
    is left to the view, which answers 409 to everyone alike.
    """
    try:
        claim = uuid.UUID(claim_id)
    except ValueError:
        return  # the view answers 404: not a claim id
    dataset = held_by(claim, user).select_related("project").first()
    if dataset is not None:
        require(user, Action.PROCESS, dataset.project)


def action_of(request: Request, view: Any) -> Action:
    """The action a view names for this request (``action_needs``), else VIEW or EDIT."""
    needs: dict[str, Action] = getattr(view, "action_needs", {})
    name = getattr(view, "action", None)
    if name in needs:
        return needs[name]
    return Action.VIEW if request.method in SAFE_METHODS else Action.EDIT


def require(user: Any, action: Action, project: Project) -> None:
    """Raise 404 when ``user`` may not see ``project``, 403 when it may see but not act."""
    if may(user, action, project):
        return
    if action is not Action.VIEW and may(user, Action.VIEW, project):
        raise PermissionDenied(f"You may not {action.name.lower()} project {project.slug!r}.")
    raise NotFound("No such object.")
