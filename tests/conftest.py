from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir
from rest_framework.test import APIClient

from tests.factories import make_client_user

pytest_plugins = ["tests.s3"]  # moto_endpoint and s3_storage fixtures

for name in list(os.environ):
    if name.startswith("CRUNCH_") and name not in (
        "CRUNCH_TEST_DATABASE_URL",
        "CRUNCH_FUZZ_EXAMPLES",
    ):
        del os.environ[name]
# The tests leave the clone as they found it: hypothesis keeps its examples elsewhere.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "crunch-hypothesis")
os.environ["AWS_CONFIG_FILE"] = "/nonexistent-crunch-aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent-crunch-aws-credentials"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    from django.db import connection

    server = Path(__file__).parent / "server"
    for item in items:
        if "live_server" in getattr(item, "fixturenames", ()):  # make test-fast leaves them out
            item.add_marker(pytest.mark.live_server)
        if item.path.is_relative_to(server):  # make test-postgres runs them all
            item.add_marker(pytest.mark.server)
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_retry_delay(settings: Any) -> None:
    """New projects retry a failed dataset at once unless a test sets ``retry_delay``."""
    settings.CRUNCH_DEFAULT_RETRY_DELAY = 0


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Failed token authentications are counted per address in the cache: one test's must
    not throttle the next test's calls, which come from the same address."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def client_user(db: None) -> tuple[Any, str]:
    return make_client_user("worker")


@pytest.fixture
def api(client_user: tuple[Any, str]) -> APIClient:
    """An API client authenticated with a compute client's token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {client_user[1]}")
    return client


@pytest.fixture
def media_root(tmp_path: Any, settings: Any) -> Iterator[Any]:
    """Local storage in a temporary folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.MEDIA_ROOT = str(root)
    yield root
