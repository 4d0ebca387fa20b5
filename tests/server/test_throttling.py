"""Failed authentication is throttled: wrong API tokens per address, wrong passwords per
address and user name (django-axes); good tokens are never throttled, however fast."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from crunch.services.accounts import create_token
from tests.factories import make_user

pytestmark = pytest.mark.django_db

WRONG = "0123456789abcdef0123456789abcdef01234567"


def api(key: str, address: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_flood_of_wrong_tokens_gets_429_and_locks_its_address(settings: Any) -> None:
    settings.CRUNCH_TOKEN_FAILURE_RATE = "10/min"
    _, good = make_user("worker", role="worker")
    attacker = [api(f"{WRONG[:-3]}{n:03}", "203.0.113.7") for n in range(300)]

    codes = [client.get("/api/projects/").status_code for client in attacker[:300]]

    assert codes[:10] == [401] * 10
    assert set(codes[10:]) == {429}
    refused = attacker[0].get("/api/projects/")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert refused.json()["detail"].startswith(
        "Too many failed token authentications from this address."
    )
    assert 0 < int(refused["Retry-After"]) <= 60
    # A good key from the locked address is refused too: a right guess gets no 200.
    assert api(good, "203.0.113.7").get("/api/projects/").status_code == 429
    # Other addresses are not affected.
    assert api(good, "198.51.100.2").get("/api/projects/").status_code == 200
    assert api(WRONG, "198.51.100.3").get("/api/projects/").status_code == 401


def test_the_address_is_let_in_again_once_its_failures_leave_the_window(settings: Any) -> None:
    settings.CRUNCH_TOKEN_FAILURE_RATE = "3/s"
    _, good = make_user("worker", role="worker")
    for _ in range(3):
        assert api(WRONG, "203.0.113.8").get("/api/projects/").status_code == 401
    assert api(good, "203.0.113.8").get("/api/projects/").status_code == 429

    time.sleep(1.1)

    assert api(good, "203.0.113.8").get("/api/projects/").status_code == 200


def test_expired_tokens_count_as_failures(settings: Any) -> None:
    settings.CRUNCH_TOKEN_FAILURE_RATE = "2/min"
    user, _ = make_user("late", role="worker")
    _, expired = create_token(user, expires=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    codes = [api(expired, "203.0.113.9").get("/api/projects/").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_workers_at_full_speed_are_never_throttled(settings: Any) -> None:
    """Hundreds of good calls in a row from one address (a worker's claim, with nothing
    to claim), with a few failures among them (below the limit), are all answered."""
    settings.CRUNCH_TOKEN_FAILURE_RATE = "5/min"
    _, good = make_user("worker", role="worker")
    worker = api(good, "192.0.2.10")
    codes = []
    for n in range(500):
        codes.append(worker.post("/api/next/", {"holder": "node"}, format="json").status_code)
        if n % 125 == 0:
            codes.append(api(WRONG, "192.0.2.10").get("/api/projects/").status_code)

    assert codes.count(204) == 500 and codes.count(401) == 4 and 429 not in codes


def test_throttling_is_off_when_the_rate_is_none(settings: Any) -> None:
    settings.CRUNCH_TOKEN_FAILURE_RATE = None
    codes = {api(WRONG, "203.0.113.10").get("/api/projects/").status_code for _ in range(50)}
    assert codes == {401}


def login(client: Client, path: str, password: str) -> int:
    response = client.post(path, {"username": "admin", "password": password})
    return response.status_code


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_wrong_passwords_lock_the_login_out_until_cool_off(settings: Any, path: str) -> None:
    get_user_model().objects.create_superuser("admin", password="right-password")
    client = Client(REMOTE_ADDR="203.0.113.20")

    codes = [login(client, path, f"wrong-{n}") for n in range(settings.AXES_FAILURE_LIMIT)]

    assert codes == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then locked
    assert login(client, path, "right-password") == 429
    assert client.get("/admin/").status_code == 302  # not logged in: sent to the login page
    # The lockout is of this address and this user name: the same user elsewhere may log in.
    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    assert login(elsewhere, path, "right-password") == 302

    settings.AXES_COOLOFF_TIME = datetime.timedelta(seconds=1)
    time.sleep(1.1)

    assert login(client, path, "right-password") == 302
    assert client.get("/admin/").status_code == 200


def test_a_good_login_resets_the_count(settings: Any) -> None:
    get_user_model().objects.create_superuser("admin", password="right-password")
    client = Client(REMOTE_ADDR="203.0.113.21")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "/admin/login/", "wrong") == 200
    assert login(client, "/admin/login/", "right-password") == 302
    client.logout()

    assert login(client, "/admin/login/", "wrong") == 200
