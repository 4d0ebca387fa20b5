"""The admin's permission matrix: every cell of admin_permission_table.py, posted through
the real admin forms (Django's test client, real views, real database).

Each cell makes fresh rows: two projects ("own", where the user holds their role, and
"other", where they hold none), each with a dataset, an item, an attribute, a status and
another user's viewer role; a role on every project; the user's token and another's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Model

from crunch.choices import AttributeKind, Role
from crunch.models import (
    AccessToken,
    Attribute,
    Dataset,
    Item,
    Notification,
    Project,
    ProjectRole,
    Status,
)
from tests.server.admin_kit import post_form, signed_in, staff
from tests.server.admin_permission_table import ADMIN_ROWS, AdminRow, admin_cells

pytestmark = pytest.mark.django_db
User = get_user_model()
MODELS: tuple[type[Model], ...] = (
    Project, ProjectRole, AccessToken, Dataset, Item, Attribute, Status, Notification,
)  # fmt: skip


@dataclass
class Cell:
    role: str
    target: str
    user: Any
    values: dict[str, Any] = field(default_factory=dict)
    here: Any = None
    """The column's project."""
    elsewhere: Any = None
    self_roles: int = 0


def owned(project: Project, someone: Any) -> dict[str, Any]:
    """A project's dataset, item, attribute, status and another user's viewer role."""
    dataset = Dataset.objects.create(project=project, name="ds")
    return {
        "dataset": dataset,
        "item": Item.objects.create(dataset=dataset, name="it"),
        "attribute": Attribute.objects.create(
            dataset=dataset, kind=AttributeKind.TEXT, key="colour", text="blue"
        ),
        "status": Status.objects.create(dataset=dataset, stage=1, state=1, note="started"),
        "role": ProjectRole.objects.create(project=project, user=someone, role=Role.VIEWER),
        "notification": Notification.objects.create(
            project=project, kind="webhook", url="https://hooks.example.org/crunch"
        ),
    }


def build(role: str, target: str) -> Cell:
    projects = {
        "own": Project.objects.create(name="Own", slug="own"),
        "other": Project.objects.create(name="Other", slug="other"),
    }
    if role == "superuser":
        user = User.objects.create_superuser("root")
    else:
        user = staff(role.replace(" ", "-"))
        if role in ("maintainer", "worker"):
            ProjectRole.objects.create(project=projects["own"], user=user, role=Role(role))
    someone = User.objects.create_user("someone")
    newcomer = User.objects.create_user("newcomer")
    rows = {name: owned(project, someone) for name, project in projects.items()}
    site_role = ProjectRole.objects.create(project=None, user=someone, role=Role.MAINTAINER)
    tokens = {
        "own": AccessToken.objects.create(user=user, name="mine"),
        "other": AccessToken.objects.create(user=someone, name="theirs"),
    }
    far = "other" if target == "own" else "own"
    here, there = rows[target], rows[far]
    cell = Cell(role, target, user, here=projects[target], elsewhere=projects[far])
    cell.values = {
        "project_id": projects[target].pk, "elsewhere_id": projects[far].pk,
        "dataset_id": here["dataset"].pk, "elsewhere_dataset_id": there["dataset"].pk,
        "item_id": here["item"].pk, "attribute_id": here["attribute"].pk,
        "status_id": here["status"].pk, "role_id": here["role"].pk,
        "site_role_id": site_role.pk, "self_id": user.pk, "newcomer_id": newcomer.pk,
        "token_id": tokens[target].pk, "token_user_id": tokens[target].user_id,
        "notification_id": here["notification"].pk,
    }  # fmt: skip
    cell.self_roles = ProjectRole.objects.filter(
        project=cell.here, user=user, role=Role.MAINTAINER
    ).count()
    return cell


def value(model: type[Model], pk: int, name: str) -> Any:
    return model._default_manager.filter(pk=pk).values_list(name, flat=True).first()


def gone(model: type[Model], pk: int) -> bool:
    return not model._default_manager.filter(pk=pk).exists()


Check = Callable[[Cell, dict[str, Any]], bool]
MADE: dict[str, Check] = {
    "project added": lambda c, v: Project.objects.filter(slug="added").exists(),
    "project changed": lambda c, v: value(Project, v["project_id"], "description") == "changed",
    "project renamed": lambda c, v: Project.objects.filter(slug="renamed").exists(),
    "project deleted": lambda c, v: gone(Project, v["project_id"]),
    "role added": lambda c, v: ProjectRole.objects.filter(
        project=c.here, user_id=v["newcomer_id"], role=Role.VIEWER
    ).exists(),
    "self granted": lambda c, v: (
        ProjectRole.objects.filter(project=c.here, user=c.user, role=Role.MAINTAINER).count()
        > c.self_roles
    ),
    "site role granted": lambda c, v: ProjectRole.objects.filter(
        project=None, user=c.user
    ).exists(),
    "role changed": lambda c, v: value(ProjectRole, v["role_id"], "role") == Role.MAINTAINER,
    "role moved": lambda c, v: value(ProjectRole, v["role_id"], "project") == v["elsewhere_id"],
    "role deleted": lambda c, v: gone(ProjectRole, v["role_id"]),
    "site role deleted": lambda c, v: gone(ProjectRole, v["site_role_id"]),
    "token added": lambda c, v: AccessToken.objects.filter(
        name="new", user_id=v["token_user_id"]
    ).exists(),
    "token made for oneself": lambda c, v: AccessToken.objects.filter(
        name="new", user=c.user
    ).exists(),
    "token renamed": lambda c, v: value(AccessToken, v["token_id"], "name") == "renamed",
    "token given": lambda c, v: value(AccessToken, v["token_id"], "user") == v["newcomer_id"],
    "token deleted": lambda c, v: gone(AccessToken, v["token_id"]),
    "dataset added": lambda c, v: Dataset.objects.filter(project=c.here, name="added").exists(),
    "dataset changed": lambda c, v: value(Dataset, v["dataset_id"], "priority") == 7,
    "dataset moved": lambda c, v: value(Dataset, v["dataset_id"], "project") == v["elsewhere_id"],
    "dataset deleted": lambda c, v: gone(Dataset, v["dataset_id"]),
    "item added": lambda c, v: Item.objects.filter(name="added").exists(),
    "item changed": lambda c, v: value(Item, v["item_id"], "description") == "changed",
    "item moved": lambda c, v: value(Item, v["item_id"], "dataset") == v["elsewhere_dataset_id"],
    "item deleted": lambda c, v: gone(Item, v["item_id"]),
    "attribute added": lambda c, v: Attribute.objects.filter(key="added").exists(),
    "attribute changed": lambda c, v: value(Attribute, v["attribute_id"], "text") == "red",
    "attribute moved": lambda c, v: (
        value(Attribute, v["attribute_id"], "dataset") == v["elsewhere_dataset_id"]
    ),
    "attribute deleted": lambda c, v: gone(Attribute, v["attribute_id"]),
    "notification added": lambda c, v: Notification.objects.filter(
        project=c.here, url="https://hooks.example.org/added"
    ).exists(),
    "notification changed": lambda c, v: (
        value(Notification, v["notification_id"], "url") == "https://hooks.example.org/changed"
    ),
    "notification deleted": lambda c, v: gone(Notification, v["notification_id"]),
    "status added": lambda c, v: Status.objects.count() > 2,
    "status changed": lambda c, v: value(Status, v["status_id"], "note") == "changed",
    "status deleted": lambda c, v: gone(Status, v["status_id"]),
}


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every stored row of crunch's models (what a refused change must leave as it was),
    less ``updated``: a form saved with its read-only fields left as they were touches it."""
    return {
        model.__name__: [
            {name: text for name, text in row.items() if name != "updated"}
            for row in model._default_manager.order_by("pk").values()
        ]
        for model in MODELS
    }


def fill(body: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {key: str(text).format(**values) for key, text in body.items()}


@pytest.mark.parametrize(
    ("row", "role", "target"),
    [pytest.param(*cell, id=f"{cell[0].name}|{cell[1]}|{cell[2]}") for cell in admin_cells()],
)
def test_admin_permission(row: AdminRow, role: str, target: str) -> None:
    cell = build(role, target)
    before = snapshot()

    response = post_form(
        signed_in(cell.user), row.url.format(**cell.values), fill(dict(row.body), cell.values)
    )

    code, made = row.expected(role, target)
    where = f"{row.name} as {role} on the {target} project"
    assert response.status_code == code, f"{where}: {response.content.decode()[:2000]}"
    assert MADE[row.made](cell, cell.values) is made, f"{where}: made is not {made}"
    if not made and row.instead:
        assert MADE[row.instead](cell, cell.values), f"{where}: {row.instead} not made"
    elif not made:
        assert snapshot() == before, f"{where} changed stored rows"


def test_every_admin_row_names_a_known_change() -> None:
    for row in ADMIN_ROWS:
        assert row.made in MADE and (not row.instead or row.instead in MADE), row.name


def test_every_model_has_its_add_change_and_delete_in_the_table() -> None:
    covered = {(row.path.split("/")[0], row.path.split("/")[-2]) for row in ADMIN_ROWS}
    for model in MODELS:
        name = model._meta.model_name
        assert (name, "add") in covered, name
        assert (name, "change") in covered, name
        assert (name, "delete") in covered, name
