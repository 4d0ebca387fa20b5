"""Notifications set through the API, the admin and ``manage.py crunch_notify``.

Who may call which endpoint is in the permission table (tests/server/permission_table.py);
here: what each call does, that a webhook's URL and secret reach maintainers only, and the
command as a real subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from crunch.access import grant
from crunch.choices import Role
from crunch.models import Delivery, DeliveryState, Notification, NotificationKind
from tests import servers
from tests.factories import make_user
from tests.server.admin_kit import signed_in, staff
from tests.server.notify_kit import Receiver, datasets, failing_project, receiver, run, webhook

__all__ = ["receiver"]  # the fixture
HOOK = "https://hooks.example.org/crunch/T0123"


def api_as(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def project(db: None) -> Any:
    return failing_project(name="Watched", is_public=True)


@pytest.fixture
def maintainer(project: Any) -> APIClient:
    return api_as(make_user("boss", role="maintainer", projects=[project])[1])


def path(project: Any, *rest: Any) -> str:
    return "/".join([f"/api/projects/{project.slug}/notifications", *map(str, rest)]) + "/"


def test_a_maintainer_creates_a_webhook_and_sees_its_secret_once(
    project: Any, maintainer: APIClient
) -> None:
    made = maintainer.post(path(project), {"kind": "webhook", "url": HOOK}, format="json")

    assert made.status_code == 201, made.content
    body = made.json()
    stored = Notification.objects.get()
    assert body["secret"] == stored.secret and len(stored.secret) >= 43
    assert (body["url"], body["events"], body["active"]) == (
        HOOK,
        ["finished", "failed", "spike"],
        True,
    )
    listed = maintainer.get(path(project)).json()
    shown = maintainer.get(path(project, stored.pk)).json()
    assert listed["results"][0]["url"] == HOOK if "results" in listed else listed[0]["url"] == HOOK
    assert stored.secret not in json.dumps(listed) + json.dumps(shown)
    assert "secret" not in shown


def test_a_maintainer_changes_and_deletes_a_notification(
    project: Any, maintainer: APIClient
) -> None:
    made = maintainer.post(
        path(project), {"kind": "email", "emails": ["a@example.org"], "events": ["failed"]},
        format="json",
    ).json()  # fmt: skip
    assert "secret" not in made
    changed = maintainer.patch(
        path(project, made["id"]), {"events": ["spike", "finished"], "active": False}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["events"], changed.json()["active"]) == (["finished", "spike"], False)
    kind = maintainer.patch(path(project, made["id"]), {"kind": "webhook"}, format="json")
    assert kind.status_code == 400
    assert maintainer.delete(path(project, made["id"])).status_code == 204
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "webhook", "url": "ftp://example.org/x"}, "url"),
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "url"),
        ({"kind": "webhook"}, "url"),
        ({"kind": "webhook", "url": HOOK, "emails": ["a@example.org"]}, "url"),
        ({"kind": "email"}, "emails"),
        ({"kind": "email", "emails": ["not an address"]}, "emails"),
        ({"kind": "email", "emails": ["a@example.org"], "url": HOOK}, "emails"),
        ({"kind": "webhook", "url": HOOK, "events": []}, "events"),
        ({"kind": "webhook", "url": HOOK, "events": ["exploded"]}, "events"),
        ({"kind": "sms", "url": HOOK}, "kind"),
    ],
)
def test_bad_notifications_are_refused_field_by_field(
    project: Any, maintainer: APIClient, body: dict[str, Any], field: str
) -> None:
    answer = maintainer.post(path(project), body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json(), answer.json()
    assert not Notification.objects.exists()


def test_the_url_reaches_no_one_but_maintainers(project: Any) -> None:
    webhook(project, HOOK)
    datasets(project, 1)
    viewer = api_as(make_user("eve", role="viewer", projects=[project])[1])
    worker = api_as(make_user("wally", role="worker", projects=[project])[1])
    for client in (viewer, worker, APIClient()):
        for url in (
            f"/api/projects/{project.slug}/", f"/api/projects/{project.slug}/overview/",
            f"/api/projects/{project.slug}/stats/", "/api/projects/", f"/projects/{project.slug}/",
            f"/api/projects/{project.slug}/next/",
        ):  # fmt: skip
            answer = client.get(url)
            assert HOOK.encode() not in answer.content, url
        assert client.get(path(project)).status_code in (401, 403)


def test_admin_maintainers_add_a_webhook_and_read_its_secret_once(project: Any) -> None:
    boss = staff("boss")
    grant(Role.MAINTAINER, project=project, user=boss)
    client = signed_in(boss)
    answer = client.post(
        "/admin/crunch/notification/add/",
        {"project": project.pk, "kind": "webhook", "url": HOOK, "on_finished": "on",
         "on_failed": "on", "active": "on", "deliveries-TOTAL_FORMS": "0",
         "deliveries-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert answer.status_code == 302, answer.content.decode()[-2000:]
    stored = Notification.objects.get()
    assert (stored.on_finished, stored.on_spike) == (True, False)
    shown = [str(message) for message in get_messages(answer.wsgi_request)]
    assert any(stored.secret in message for message in shown)
    once = client.get(answer["Location"])  # the next page shows the message, once
    assert stored.secret.encode() in once.content
    page = client.get(f"/admin/crunch/notification/{stored.pk}/change/")
    assert page.status_code == 200 and stored.secret.encode() not in page.content
    assert HOOK.encode() in page.content

    onlooker = signed_in(staff("onlooker"))  # staff who may view every project, no role
    listing = onlooker.get("/admin/crunch/notification/")
    assert HOOK.encode() not in listing.content
    assert onlooker.get(f"/admin/crunch/notification/{stored.pk}/change/").status_code == 302


def test_admin_sends_a_given_up_delivery_again(project: Any) -> None:
    hook = webhook(project, HOOK)
    delivery = Delivery.objects.create(
        notification=hook, event="finished", key="k", payload={}, state=DeliveryState.GIVEN_UP,
        attempts=10, last_error="HTTP 500",
    )  # fmt: skip
    root = get_user_model().objects.create_superuser("root")
    answer = signed_in(root).post(
        "/admin/crunch/delivery/", {"action": "send_again", "_selected_action": [delivery.pk]}
    )
    assert answer.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.QUEUED, 0)


def command(*args: str, env: dict[str, str], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``crunch_notify`` on the test database, with
    receivers on 127.0.0.1 allowed and e-mail written to files."""
    settings = tmp_path / "notify_settings.py"
    settings.write_text(
        "from testproject.settings import *  # noqa\n"
        "CRUNCH_NOTIFY_PRIVATE_ADDRESSES = True\n"
        f"EMAIL_BACKEND = 'django.core.mail.backends.filebased.EmailBackend'\n"
        f"EMAIL_FILE_PATH = {str(tmp_path / 'mail')!r}\n"
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DJANGO_"))},
        **env, **servers.test_database_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{servers.ROOT}",
        "DJANGO_SETTINGS_MODULE": "notify_settings",
    }  # fmt: skip
    return [sys.executable, "manage.py", "crunch_notify", *args], environment


@pytest.mark.django_db(transaction=True)
def test_crunch_notify_once_delivers_as_a_subprocess(receiver: Receiver, tmp_path: Path) -> None:
    project = failing_project(name="Commanded")
    webhook(project, receiver.url)
    Notification.objects.create(
        project=project, kind=NotificationKind.EMAIL, emails="a@example.org"
    )
    datasets(project, 1)
    run(project, fail=False)
    argv, env = command("--once", env={}, tmp_path=tmp_path)

    result = subprocess.run(
        argv, cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 queued, 2 delivered, 0 to retry, 0 given up."
    assert [r.headers["X-Crunch-Event"] for r in receiver.requests] == ["finished"]
    (mail,) = (tmp_path / "mail").iterdir()
    assert "Commanded finished" in mail.read_text()


@pytest.mark.django_db(transaction=True)
def test_crunch_notify_loops_until_sigterm(tmp_path: Path) -> None:
    argv, env = command("--every", "1", env={}, tmp_path=tmp_path)
    process = subprocess.Popen(
        argv, cwd=servers.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "Notifying every 1 s until SIGTERM.\n"
    time.sleep(1.5)  # a round or two
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


@pytest.mark.parametrize("every", ["0", "soon", "99999999"])
def test_crunch_notify_refuses_a_bad_period(every: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "crunch_notify", "--every", every], cwd=servers.ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("manage.py crunch_notify: error: argument --every")
    )
