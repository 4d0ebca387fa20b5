"""``manage.py crunch_storage_check`` makes a local storage ready (issue 23, 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def server_env(tmp_path: Path, media: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DATABASE_URL"))}
    return {**env, "CRUNCH_SQLITE": str(tmp_path / "db.sqlite3"), "CRUNCH_MEDIA_ROOT": str(media)}


def test_storage_check_prints_settings_a_client_accepts(tmp_path: Path) -> None:
    media = tmp_path / "media"
    env = server_env(tmp_path, media)

    checked = manage("crunch_storage_check", env=env)
    printed = manage("crunch_storage_check", "--client-settings", env=env)

    assert (checked.returncode, checked.stdout.strip()) == (
        0, f"The storage works: the folder {str(media)!r}.",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    values = tomllib.loads(printed.stdout)
    assert values == {
        "STORAGES": {
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media)},
            }
        }
    }
    assert os.listdir(media) == []  # the test file and its folder are gone
    path = tmp_path / "storage.toml"
    path.write_text(printed.stdout)
    from crunchclient.settings.bootstrap import read_settings_file

    assert read_settings_file(path)["STORAGES"]["default"]["OPTIONS"]["location"] == str(media)


def test_storage_check_fails_in_one_line_when_the_folder_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    result = manage("crunch_storage_check", env=server_env(tmp_path, blocker / "media"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(
        f"CommandError: The local storage's folder {str(blocker / 'media')!r} cannot be created"
    )
