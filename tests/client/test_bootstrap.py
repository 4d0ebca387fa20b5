"""The settings bootstrap and option parsing, in process (no Django reconfiguration)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from crunchclient import ClientConfig
from crunchclient.cli.arguments import duration
from crunchclient.exceptions import ConfigurationError
from crunchclient.settings import bootstrap
from crunchclient.settings.config import resolve


def test_legacy_default_file_storage_becomes_storages_default() -> None:
    values = bootstrap.settings_from_values(
        {
            "DEFAULT_FILE_STORAGE": "storages.backends.s3boto3.S3Boto3Storage",
            "AWS_STORAGE_BUCKET_NAME": "b",
        }
    )
    assert values["STORAGES"]["default"] == {"BACKEND": "storages.backends.s3boto3.S3Boto3Storage"}
    assert values["AWS_STORAGE_BUCKET_NAME"] == "b"
    assert values["INSTALLED_APPS"] == ["crunchclient"] and values["DATABASES"] == {}


def test_storages_win_over_the_legacy_key() -> None:
    storages = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    values = bootstrap.settings_from_values({"STORAGES": storages, "DEFAULT_FILE_STORAGE": "x.Y"})
    assert values["STORAGES"]["default"] == storages["default"]


def test_toml_and_json_read_the_same(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('MEDIA_ROOT = "/data"\n[STORAGES.default]\nBACKEND = "a.B"\n')
    json_file = tmp_path / "s.json"
    json_file.write_text('{"MEDIA_ROOT": "/data", "STORAGES": {"default": {"BACKEND": "a.B"}}}')
    assert bootstrap.read_settings_file(toml) == bootstrap.read_settings_file(json_file)


def test_lower_case_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('media_root = "/data"\n')
    with pytest.raises(
        ConfigurationError,
        match=r"has the key 'media_root'; Django settings are upper case: rename it 'MEDIA_ROOT'\.$",  # noqa: E501
    ):
        bootstrap.read_settings_file(path)


def test_second_configuration_is_refused() -> None:
    # pytest-django configured Django already, as a Django project would.
    with pytest.raises(ConfigurationError, match="^Django is already configured"):
        bootstrap.configure_minimal()


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("30m", 1800), ("90s", 90), ("1h30m", 5400), ("45", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2d", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        duration(text)


def test_help_names_the_environment_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from crunchclient.management.commands.crunch_loop import Command

    parser = Command().create_parser("crunch", "loop")
    text = parser.format_help()
    for needle in (
        "(env: CRUNCH_URL)",
        "(env: CRUNCH_TOKEN)",
        "(env: CRUNCH_STORAGE_SETTINGS)",
        "--max-datasets",
        "--time-limit",
        "exit codes:",
        "11 crunch submit: the scheduler refused a command",
        "130 stopped by SIGTERM/SIGINT",
        "--pass-env NAME",
        "CRUNCH_TOKEN, AWS_*",
    ):
        assert needle in " ".join(text.split()), needle  # fmt: skip


def test_storage_settings_option_inside_a_project_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, media_root: Path
) -> None:
    config = resolve(
        {
            "url": "http://127.0.0.1:1/",
            "token": "t",
            "storage_settings": "s.toml",
            "directory": tmp_path / "w",
        }
    )
    assert (
        "--storage-settings 's.toml' is ignored: inside a Django project its STORAGES are used."
        in caplog.text
    )
    assert Path(config.storage.location) == media_root


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@crunch.example.org/", "https://user:***@crunch.example.org/"),
        ("http://:pw@127.0.0.1:8000/api/", "http://:***@127.0.0.1:8000/api/"),
        ("https://user@crunch.example.org/", "https://user@crunch.example.org/"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
    ],
)
def test_passwords_in_urls_are_masked(url: str, shown: str) -> None:
    from crunchclient.server.http import masked

    assert masked(url) == shown


def test_the_server_url_password_never_shows(tmp_path: Path) -> None:
    from crunchclient.exceptions import ServerError
    from crunchclient.server.connection import Connection

    connection = Connection("http://user:pw-0001@127.0.0.1:1/", "t", retry_for=0)
    with pytest.raises(ServerError) as excinfo:
        connection.project("p")
    assert "pw-0001" not in str(excinfo.value) and "user:***@127.0.0.1:1" in str(excinfo.value)


@pytest.mark.parametrize(
    ("slug", "segment"),
    [("p:d", "p:d"), ("a/../b", "a%2F..%2Fb"), ("..", "%2E%2E"), ("a?b#c", "a%3Fb%23c")],
)
def test_slugs_are_one_path_segment(slug: str, segment: str) -> None:
    from crunchclient.server.http import quote_slug

    assert quote_slug(slug) == segment


def test_notes_are_cut_between_characters() -> None:
    from crunchclient.worker.context import head_bytes
    from crunchclient.worker.stages.base import tail_bytes

    text = "\u00e9" * 10_000
    head = head_bytes(text, 101)
    assert len(head.encode()) <= 101 and head.endswith("bytes cut]")
    assert head.startswith("\u00e9" * 40) and "\ufffd" not in head
    assert tail_bytes(text.encode(), 101) == "\u00e9" * 50  # the odd byte left out
    assert head_bytes("short", 101) == "short"


def test_workflow_environment_keeps_secrets_out() -> None:
    from crunchclient.settings.secrets import workflow_env

    config = ClientConfig(
        url="http://h/", token="token-0001", storage=None, directory=Path("."),
        secrets=frozenset({"token-0001", "settings-password", "pw"}), pass_env=("AWS_REGION",),
    )  # fmt: skip
    environ = {
        "PATH": "/bin", "CRUNCH_TOKEN": "token-0001", "CRUNCH_URL": "http://u:settings-password@h/",
        "AWS_SECRET_ACCESS_KEY": "k", "AWS_REGION": "eu-west-1", "COPY": "pw", "HOME": "/home/pw",
        "MINE": "token-0001",
    }  # fmt: skip
    assert workflow_env(config, environ) == {
        "PATH": "/bin", "AWS_REGION": "eu-west-1", "HOME": "/home/pw",
    }  # fmt: skip


def test_every_exit_code_is_in_the_table_once() -> None:
    """--help imports crunchclient.exceptions alone: every code the client returns is there."""
    from crunchclient.exceptions import EXIT_CODES, ClientError

    def subclasses(cls: type[ClientError]) -> list[type[ClientError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    import crunchclient.launchers.submit  # noqa: F401  # its errors, if declared there

    codes = [code for code, _ in EXIT_CODES]
    assert len(codes) == len(set(codes))
    assert {cls.exit_code for cls in subclasses(ClientError)} <= set(codes)
    assert 11 in codes
