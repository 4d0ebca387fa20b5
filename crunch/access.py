"""Who may see or do what on a project: the one check the API, pages, files and admin call.

Roles are granted per project (or on every project) to users or groups
(``ProjectRole``). Each role includes the ones below it:

- *maintainer*: edits the project and its datasets, items and attributes; retries;
- *worker*: claims datasets, renews and releases its own claims, reports on them;
- *viewer*: reads.

Anonymous visitors read public projects only. Superusers may do everything; staff read
every project. A project a user may not view does not exist for them: callers filter
their querysets with ``projects_where(user, Action.VIEW)`` so it answers 404, not 403.
"""

from __future__ import annotations

import enum
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from crunch.choices import Role
from crunch.db import statements
from crunch.db.statements import Condition
from crunch.models import Attribute, Dataset, Item, Project, ProjectRole, Status


class Action(enum.Enum):
    """What a request does to a project, and the least role it needs."""

    VIEW = Role.VIEWER
    PROCESS = Role.WORKER
    EDIT = Role.MAINTAINER
    RETRY = Role.MAINTAINER


RANK = {Role.VIEWER: 1, Role.WORKER: 2, Role.MAINTAINER: 3}


def roles_granting(action: Action) -> list[str]:
    """The roles that allow ``action``: its own and every role above it."""
    least = RANK[action.value]
    return [str(role) for role, rank in RANK.items() if rank >= least]


def grants(user: Any, action: Action) -> QuerySet[ProjectRole]:
    """The user's roles (their own and their groups') that allow ``action``."""
    return ProjectRole.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), role__in=roles_granting(action)
    )


def is_signed_in(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def projects_where(user: Any, action: Action) -> QuerySet[Project]:
    """The projects on which ``user`` may do ``action``, in one query."""
    projects = Project.objects.all()
    if not is_signed_in(user):
        return projects.filter(is_public=True) if action is Action.VIEW else projects.none()
    if user.is_superuser or (action is Action.VIEW and user.is_staff):
        return projects
    granted = grants(user, action)
    allowed = Exists(granted.filter(project=OuterRef("pk"))) | Exists(
        granted.filter(project__isnull=True)
    )
    if action is Action.VIEW:
        allowed |= Q(is_public=True)
    return projects.filter(allowed)


def datasets_where(user: Any, action: Action) -> QuerySet[Dataset]:
    """The datasets of the projects on which ``user`` may do ``action``."""
    if is_signed_in(user) and (user.is_superuser or (action is Action.VIEW and user.is_staff)):
        return Dataset.objects.all()
    return Dataset.objects.filter(project__in=projects_where(user, action))


def may(user: Any, action: Action, project: Project) -> bool:
    """Whether ``user`` may do ``action`` on ``project``."""
    if is_signed_in(user) and user.is_superuser:
        return True
    if action is Action.VIEW and project.is_public:
        return True
    return projects_where(user, action).filter(pk=project.pk).exists()


def may_create_projects(user: Any) -> bool:
    """Superusers, holders of Django's ``crunch.add_project`` and site-wide maintainers."""
    if not is_signed_in(user):
        return False
    if user.is_superuser or user.has_perm("crunch.add_project"):
        return True
    return grants(user, Action.EDIT).filter(project__isnull=True).exists()


def project_of(obj: Any) -> Project:
    """The project a project, dataset, item, attribute or status belongs to."""
    if isinstance(obj, Project):
        return obj
    if isinstance(obj, Dataset):
        return obj.project
    if isinstance(obj, Item):
        return obj.dataset.project
    if isinstance(obj, Status):
        return obj.dataset.project
    if isinstance(obj, Attribute):
        owner = obj.project or obj.dataset or obj.item
        return project_of(owner)
    raise TypeError(f"{type(obj).__name__} belongs to no project.")


def grant(
    role: Role | str, *, project: Project | None, user: Any = None, group: Any = None
) -> None:
    """Give ``user`` or ``group`` a role on ``project`` (None: on every project)."""
    ProjectRole.objects.get_or_create(project=project, user=user, group=group, role=Role(role))


def may_process(user: Any) -> Condition | None:
    """A condition on a dataset row: may ``user`` process its project? None: always.

    SQL (crunch.db's ``may_process``), so a service checks the right inside the query it
    runs anyway: the claim and the status's lock. The same rule as ``grants``: a worker or
    maintainer role of the user or one of their groups, on the project or on every
    project; tests/server/test_sql_statements.py compares the two.
    """
    if is_signed_in(user) and user.is_superuser:
        return None
    if not is_signed_in(user):
        return statements.NO_ONE
    return statements.may_process(user.pk, roles_granting(Action.PROCESS))
