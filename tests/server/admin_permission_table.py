"""The admin's part of the permission table: add, change and delete of every model.

``tests/server/test_admin_permissions.py`` posts each row's admin form for each user and
target, and checks the answer and the rows stored afterwards; ``permission_table.markdown``
appends this table to ``docs/permissions.md``. A cell is the status code and whether the
change was made ("302+") or not ("302-": nothing stored changed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tests.server.permission_table import format_body

ADMIN_ROLES = ("superuser", "maintainer", "no role", "worker")
ADMIN_ROLE_HELP = {
    "superuser": "`is_superuser`, no role",
    "maintainer": "staff, maintainer of the own project",
    "no role": "staff, no role on any project",
    "worker": "staff, worker of the own project",
}
TARGETS = ("own", "other")
ADMIN_PLACEHOLDERS = {
    "project_id": "the column's project: the own one, or the other (where the user has no role)",
    "elsewhere_id": "the project of the other column, where a move would put the object",
    "dataset_id": "a dataset of the column's project, with an item, an attribute and a status",
    "elsewhere_dataset_id": "the dataset of the other column's project",
    "item_id": "that dataset's item",
    "attribute_id": "that dataset's attribute",
    "status_id": "that dataset's status",
    "role_id": "another user's viewer role on the column's project",
    "site_role_id": "another user's maintainer role on every project",
    "self_id": "the signed-in user",
    "newcomer_id": "a user with no role",
    "token_id": "own column: the signed-in user's token; other column: another user's",
    "token_user_id": "own column: the signed-in user; other column: another user",
    "notification_id": "a webhook notification of the column's project",
}


@dataclass(frozen=True)
class AdminRow:
    """One admin form post; ``made`` names the change the test looks for in the database."""

    name: str
    path: str
    body: Mapping[str, Any]
    own: str
    other: str
    made: str
    note: str = ""
    instead: str = ""
    """Where the change is refused, this other change is made in its place (its name)."""

    def __post_init__(self) -> None:
        for target in TARGETS:
            outcomes = getattr(self, target).split()
            if len(outcomes) != len(ADMIN_ROLES) or not all(
                o[:3].isdigit() and o[3:] in ("+", "-") for o in outcomes
            ):
                raise ValueError(f"Admin row {self.name!r}: give {len(ADMIN_ROLES)} outcomes.")

    @property
    def url(self) -> str:
        return f"/admin/crunch/{self.path}"

    def expected(self, role: str, target: str) -> tuple[int, bool]:
        """The status code, and whether the change is made."""
        outcome = getattr(self, target).split()[ADMIN_ROLES.index(role)]
        return int(outcome[:3]), outcome[3] == "+"


def by_role(superuser: str, maintainer: str, no_role: str, worker: str) -> str:
    return f"{superuser} {maintainer} {no_role} {worker}"


EDITS = {"own": by_role("302+", "302+", "403-", "403-"), "other": by_role("302+", "403-", "403-",
                                                                          "403-")}  # fmt: skip
"""Changes and deletes of what staff may view: maintainers of the project and superusers."""
ADDS = {"own": by_role("302+", "302+", "403-", "403-"), "other": by_role("302+", "200-", "403-",
                                                                         "403-")}  # fmt: skip
"""Adds: 403 without an editable project at all; 200 and a form error naming the choice."""
MOVES = {"own": by_role("302-", "302-", "403-", "403-"), "other": by_role("302-", "403-", "403-",
                                                                          "403-")}  # fmt: skip
"""A dataset, item or attribute never changes owner: the field is read-only, for everyone."""
ROLES_EDIT = {"own": by_role("302+", "302+", "302-", "302-"),
              "other": by_role("302+", "302-", "302-", "302-")}  # fmt: skip
"""Roles are listed only on projects the user may edit: others are not found (302 home)."""
NOBODY = {"own": by_role("403-", "403-", "403-", "403-"),
          "other": by_role("403-", "403-", "403-", "403-")}  # fmt: skip
ADD_ROLE = {"own": by_role("302+", "302+", "403-", "403-"),
            "other": by_role("302+", "200-", "403-", "403-")}  # fmt: skip
ALL_ADD = {"own": by_role("302+", "302+", "302+", "302+"),
           "other": by_role("302+", "302+", "302+", "302+")}  # fmt: skip
OWN_TOKEN = {"own": by_role("302+", "302+", "302+", "302+"),
             "other": by_role("302+", "302-", "302-", "302-")}  # fmt: skip
NEVER = {"own": by_role("302-", "302-", "302-", "302-"),
         "other": by_role("302-", "302-", "302-", "302-")}  # fmt: skip
SITE_ROLE = {"own": by_role("302+", "302-", "302-", "302-"),
             "other": by_role("302+", "302-", "302-", "302-")}  # fmt: skip
MAINTAINED = {"own": by_role("302+", "302+", "302-", "302-"),
              "other": by_role("302+", "302-", "302-", "302-")}  # fmt: skip
"""Notifications are listed only to the project's maintainers, even to staff who view it:
others are not found (302 home)."""
DELETE = {"post": "yes"}

ADMIN_ROWS: tuple[AdminRow, ...] = (
    AdminRow("add project", "project/add/", {"name": "Added", "slug": "added"}, **ALL_ADD,
             made="project added",
             note="staff hold `crunch.add_project`, which lets them create projects, as in the "
                  "API; the creator becomes its maintainer; both columns add the same"),
    AdminRow("change project", "project/{project_id}/change/", {"description": "changed"},
             **EDITS, made="project changed"),
    AdminRow("change project slug", "project/{project_id}/change/", {"slug": "renamed"},
             own=by_role("302-", "302-", "403-", "403-"),
             other=by_role("302-", "403-", "403-", "403-"), made="project renamed",
             note="read-only: its datasets' slugs and folders carry it"),
    AdminRow("delete project", "project/{project_id}/delete/", DELETE, **EDITS,
             made="project deleted"),
    AdminRow("add role for another user", "projectrole/add/",
             {"project": "{project_id}", "user": "{newcomer_id}", "role": "viewer"}, **ADD_ROLE,
             made="role added"),
    AdminRow("grant oneself maintainer", "projectrole/add/",
             {"project": "{project_id}", "user": "{self_id}", "role": "maintainer"}, **ADD_ROLE,
             made="self granted"),
    AdminRow("grant oneself maintainer of every project", "projectrole/add/",
             {"project": "", "user": "{self_id}", "role": "maintainer"},
             own=by_role("302+", "200-", "403-", "403-"),
             other=by_role("302+", "200-", "403-", "403-"), made="site role granted",
             note="superusers only; both columns add the same"),
    AdminRow("change role", "projectrole/{role_id}/change/", {"role": "maintainer"},
             **ROLES_EDIT, made="role changed"),
    AdminRow("move role to the other project", "projectrole/{role_id}/change/",
             {"project": "{elsewhere_id}"}, own=by_role("302+", "200-", "302-", "302-"),
             other=by_role("302+", "302-", "302-", "302-"), made="role moved"),
    AdminRow("delete role", "projectrole/{role_id}/delete/", DELETE, **ROLES_EDIT,
             made="role deleted"),
    AdminRow("delete a role on every project", "projectrole/{site_role_id}/delete/",
             DELETE, **SITE_ROLE, made="site role deleted"),
    AdminRow("add token", "accesstoken/add/", {"user": "{token_user_id}", "name": "new"},
             own=by_role("302+", "302+", "302+", "302+"),
             other=by_role("302+", "302-", "302-", "302-"), made="token added",
             instead="token made for oneself",
             note="staff name no user: the token is made for themselves"),
    AdminRow("rename token", "accesstoken/{token_id}/change/", {"name": "renamed"},
             **OWN_TOKEN, made="token renamed"),
    AdminRow("give token to another user", "accesstoken/{token_id}/change/",
             {"user": "{newcomer_id}"}, **NEVER, made="token given",
             note="a token's user never changes"),
    AdminRow("delete token", "accesstoken/{token_id}/delete/", DELETE, **OWN_TOKEN,
             made="token deleted"),
    AdminRow("add dataset", "dataset/add/", {"project": "{project_id}", "name": "added"},
             **ADDS, made="dataset added"),
    AdminRow("change dataset", "dataset/{dataset_id}/change/", {"priority": "7"},
             **EDITS, made="dataset changed"),
    AdminRow("move dataset to the other project", "dataset/{dataset_id}/change/",
             {"project": "{elsewhere_id}"}, **MOVES, made="dataset moved"),
    AdminRow("delete dataset", "dataset/{dataset_id}/delete/", DELETE, **EDITS,
             made="dataset deleted"),
    AdminRow("delete dataset from the list", "dataset/",
             {"action": "delete_selected", "_selected_action": "{dataset_id}", "post": "yes"},
             **EDITS, made="dataset deleted"),
    AdminRow("add item", "item/add/", {"dataset": "{dataset_id}", "name": "added"},
             **ADDS, made="item added"),
    AdminRow("change item", "item/{item_id}/change/", {"description": "changed"},
             **EDITS, made="item changed"),
    AdminRow("move item to the other project", "item/{item_id}/change/",
             {"dataset": "{elsewhere_dataset_id}"}, **MOVES, made="item moved"),
    AdminRow("delete item", "item/{item_id}/delete/", DELETE, **EDITS,
             made="item deleted"),
    AdminRow("add attribute", "attribute/add/",
             {"dataset": "{dataset_id}", "kind": "char", "key": "added", "text": "x"},
             **ADDS, made="attribute added"),
    AdminRow("change attribute", "attribute/{attribute_id}/change/", {"text": "red"},
             **EDITS, made="attribute changed"),
    AdminRow("move attribute to the other project", "attribute/{attribute_id}/change/",
             {"dataset": "{elsewhere_dataset_id}"}, **MOVES, made="attribute moved"),
    AdminRow("delete attribute", "attribute/{attribute_id}/delete/", DELETE, **EDITS,
             made="attribute deleted"),
    AdminRow("add notification", "notification/add/",
             {"project": "{project_id}", "kind": "webhook", "url": "https://hooks.example.org/added",
              "on_finished": "on"}, **ADDS, made="notification added"),
    AdminRow("change notification", "notification/{notification_id}/change/",
             {"url": "https://hooks.example.org/changed"}, **MAINTAINED,
             made="notification changed"),
    AdminRow("delete notification", "notification/{notification_id}/delete/", DELETE,
             **MAINTAINED, made="notification deleted"),
    AdminRow("add status", "status/add/",
             {"dataset": "{dataset_id}", "stage": "1", "state": "1"}, **NOBODY,
             made="status added", note="statuses are the clients' history"),
    AdminRow("change status", "status/{status_id}/change/", {"note": "changed"},
             **NOBODY, made="status changed"),
    AdminRow("delete status", "status/{status_id}/delete/", DELETE, **NOBODY,
             made="status deleted", note="only with its dataset"),
)  # fmt: skip


def admin_cells() -> Iterator[tuple[AdminRow, str, str]]:
    for row in ADMIN_ROWS:
        for target in TARGETS:
            for role in ADMIN_ROLES:
                yield row, role, target


def admin_markdown() -> list[str]:
    """The admin's table, for docs/permissions.md."""
    columns = [f"{role}, {target}" for target in TARGETS for role in ADMIN_ROLES]
    lines = [
        "",
        "## The admin",
        "",
        "`tests/server/test_admin_permissions.py` posts each admin form (read from its page",
        "when the user may open it, with the changes added as an attacker would) and checks",
        "the answer and the rows stored afterwards: *done* is the change made, *refused* is",
        "nothing stored changed. Staff hold every Django permission on crunch's models; the",
        "roles narrow them per project, before and after the change. A 302 refused is a",
        "read-only field left as it was, or an object the user is not shown (sent to the",
        "admin's home); a 200 refused is the form with an error.",
        "",
        "Users (each column's):",
        "",
        *(f"- *{role}*: {ADMIN_ROLE_HELP[role]}." for role in ADMIN_ROLES),
        "",
        "The *own* column acts on the own project (where the user holds their role), the",
        "*other* column on another project, where the user has no role.",
        "",
        *(f"- `{{{name}}}`: {text}." for name, text in ADMIN_PLACEHOLDERS.items()),
        "",
        "| Request | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in ADMIN_ROWS:
        request = f"{row.name}: `POST {row.url}` `{format_body(row.body)}`"
        if row.note:
            request += f" ({row.note})"
        outcomes = []
        for target in TARGETS:
            for role in ADMIN_ROLES:
                code, made = row.expected(role, target)
                outcomes.append(f"{code} {'done' if made else 'refused'}")
        lines.append(f"| {request} | " + " | ".join(outcomes) + " |")
    return lines
