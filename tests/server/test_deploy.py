"""Settings safe to deploy: the documented ones pass ``check --deploy``; DEBUG is opt-in; CSP."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from crunch.middleware import DEFAULT_POLICY
from tests.factories import make_project

ROOT = Path(__file__).resolve().parents[2]


def run_python(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AWS_"))}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_documented_deploy_settings_pass_check_deploy() -> None:
    result = run_python(
        ["manage.py", "check", "--deploy"],
        DJANGO_SETTINGS_MODULE="testproject.deploy",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="crunch.example.org",
        DATABASE_URL="postgres://crunch:password@db.example.org:5432/crunch",
        AWS_STORAGE_BUCKET_NAME="crunch-datasets",
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_deploy_settings_name_a_missing_secret() -> None:
    result = run_python(
        ["manage.py", "check", "--deploy"], DJANGO_SETTINGS_MODULE="testproject.deploy"
    )

    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(("value", "debug"), [(None, "False"), ("0", "False"), ("1", "True")])
def test_testproject_debug_is_off_unless_asked_for(value: str | None, debug: str) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "testproject.settings"}
    if value is not None:
        env["DJANGO_DEBUG"] = value
    code = "import django; from django.conf import settings; django.setup(); print(settings.DEBUG)"

    result = run_python(["-c", code], **env)

    assert result.stdout.strip() == debug, result.stderr


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgres://crunch@db.example.org:5432/crunch",
         {"server_side_binding": True, "prepare_threshold": 5}),
        ("sqlite:////tmp/crunch.sqlite3", {}),
    ],
)  # fmt: skip
def test_a_database_url_prepares_statements_only_on_postgresql(
    url: str, options: dict[str, object]
) -> None:
    code = (
        "import json, os; os.environ['DATABASE_URL'] = " + repr(url) + "; "
        "from testproject import settings; "
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    )

    result = run_python(["-c", code])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == options


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_without_inline_script(client: Client) -> None:
    project = make_project(name="Open", is_public=True)

    response = client.get(project.get_absolute_url())

    policy = response["Content-Security-Policy"]
    assert policy == DEFAULT_POLICY
    assert "'unsafe-inline'" not in policy and "script-src 'self'" in policy
    html = response.content.decode()
    assert "<script>" not in html and " style=" not in html and "<style" not in html


@pytest.mark.django_db
def test_the_policy_is_a_setting(client: Client, settings: object) -> None:
    project = make_project(name="Open", is_public=True)
    settings.CRUNCH_CONTENT_SECURITY_POLICY = "default-src 'none'"  # type: ignore[attr-defined]

    assert client.get(project.get_absolute_url())["Content-Security-Policy"] == "default-src 'none'"

    settings.CRUNCH_CONTENT_SECURITY_POLICY = ""  # type: ignore[attr-defined]
    assert "Content-Security-Policy" not in client.get(project.get_absolute_url())
