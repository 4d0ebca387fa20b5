"""Issue 23: a newcomer's mistakes are caught before anything is claimed or spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, error_line

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending(crunch: Crunch) -> list[str]:
    project = crunch.project("Words", "echo ok > ok.txt\n")
    return [crunch.dataset(project["slug"], f"d{i}", {"in.txt": "x"})["slug"] for i in range(3)]


def nothing_claimed() -> None:
    assert set(Dataset.objects.values_list("state", "attempts")) == {("pending", 0)}
    assert not Status.objects.exists()


FS = 'BACKEND = "django.core.files.storage.FileSystemStorage"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"[STORAGE.default]\n{FS}\n", "has the unknown setting 'STORAGE' (did you mean 'STORAGES'?): remove it or fix its name."),  # noqa: E501
        (f"[STORAGES.defualt]\n{FS}\n", "names no storage: add a [STORAGES.default] table with its BACKEND (e.g. BACKEND = \"django.core.files.storage.FileSystemStorage\" and OPTIONS = { location = \"/data/media\" })."),  # noqa: E501
        ("", "names no storage: add a [STORAGES.default] table with its BACKEND (e.g. BACKEND = \"django.core.files.storage.FileSystemStorage\" and OPTIONS = { location = \"/data/media\" })."),  # noqa: E501
        ('MEDIA_RROT = "/data"\n', "has the unknown setting 'MEDIA_RROT' (did you mean 'MEDIA_ROOT'?): remove it or fix its name."),  # noqa: E501
    ],
    ids=["misspelled-table", "no-default", "empty-file", "misspelled-setting"],
)  # fmt: skip
def test_a_settings_file_without_a_usable_storage_is_refused_before_claiming(
    crunch: Crunch, pending: list[str], tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "storage.toml"
    path.write_text(text)

    result = crunch.run("loop", "--storage-settings", str(path))

    assert (result.returncode, error_line(result)) == (
        2,
        f"CommandError: Storage settings file {str(path)!r} {message}",
    )
    nothing_claimed()


def test_aws_and_legacy_settings_are_known(crunch: Crunch, tmp_path: Path) -> None:
    from crunchclient.settings.bootstrap import read_settings_file

    path = tmp_path / "legacy.toml"
    path.write_text(
        'DEFAULT_FILE_STORAGE = "storages.backends.s3.S3Storage"\n'
        'AWS_STORAGE_BUCKET_NAME = "b"\nMEDIA_ROOT = "/data"\n'
    )
    assert read_settings_file(path)["AWS_STORAGE_BUCKET_NAME"] == "b"


def test_a_loop_that_failed_a_dataset_exits_10_though_it_will_be_retried(
    crunch: Crunch,
) -> None:
    project = crunch.project("Picky", "grep -q good in.txt\n", retry_delay=60)
    for name, text in (("a", "good"), ("b", "bad"), ("c", "good")):
        crunch.dataset(project["slug"], name, {"in.txt": text})

    result = crunch.run("loop", "--project", "picky")

    assert (result.returncode, error_line(result)) == (
        10,
        "CommandError: 1 of 3 dataset(s) failed (1 waiting to retry): "
        "see their notes with 'crunch why DATASET'.",
    )
    retry_at = Dataset.objects.get(slug="picky:b").not_before
    assert (
        f"Processed 3 dataset(s): 2 completed, 0 failed, 1 waiting to retry at {retry_at:%H:%M} UTC"
        in result.stdout
    )
    assert Dataset.objects.get(slug="picky:b").state == "pending"


def test_python_m_crunchclient_is_the_crunch_command() -> None:
    import subprocess
    import sys

    from tests.clientkit import CRUNCH, clean_env

    module = subprocess.run(
        [sys.executable, "-m", "crunchclient", "--help"], capture_output=True, text=True,
        env=clean_env(),
    )  # fmt: skip
    script = subprocess.run([CRUNCH, "--help"], capture_output=True, text=True, env=clean_env())
    assert (module.returncode, module.stdout) == (0, script.stdout)
    assert module.stdout.startswith("usage: crunch COMMAND [options]")


def test_a_request_the_server_rejects_exits_3_as_the_table_says(crunch: Crunch) -> None:
    crunch.project("Words", "echo ok > ok.txt\n")
    env = {**crunch.env, "CRUNCH_TOKEN": crunch.maintainer_token()}

    result = crunch.run("add-dataset", "words", "", env=env)

    assert result.returncode == 3, result.stderr
    assert error_line(result).startswith("CommandError: The server rejected POST ")
    assert "    3  server unreachable after retrying, or it rejected the request" in (
        crunch.run("--help").stdout
    )


# ---------------------------------------------------------------- point 2 and 3: causes


@pytest.fixture
def words(crunch: Crunch) -> dict:
    project = crunch.project("Words", "echo ok > ok.txt\n")
    return crunch.dataset(project["slug"], "site-7", {"in.txt": "x"})


def test_a_url_ending_in_the_api_prefix_is_named(crunch: Crunch, words: dict) -> None:
    result = crunch.run("loop", "--project", "words", "--url", f"{crunch.url}/api/")

    assert (result.returncode, error_line(result)) == (
        7,
        f"CommandError: No crunch API answers at '{crunch.url}/api/api/' (404). It ends in "
        f"/api/, which the client adds itself: use '{crunch.url}/'.",
    )
    nothing_claimed()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (("loop", "--project", "wrods"), "No project has the slug 'wrods'. Did you mean 'words'?"),
        (("run", "words:site-8"), "No dataset has the slug 'words:site-8': dataset slugs look like 'project:dataset'. Did you mean 'words:site-7'?"),  # noqa: E501
        (("why", "wrds:site-7"), "No dataset has the slug 'wrds:site-7': dataset slugs look like 'project:dataset'. Did you mean 'words'?"),  # noqa: E501
    ],
    ids=["project", "dataset", "dataset-of-a-misspelled-project"],
)  # fmt: skip
def test_a_misspelled_slug_gets_the_closest_the_token_can_see(
    crunch: Crunch, words: dict, command: tuple[str, ...], message: str
) -> None:
    crunch.project("Secret words", "true\n", is_public=False)  # the worker may not see it
    result = crunch.run(*command)
    assert (result.returncode, error_line(result)) == (7, f"CommandError: {message}")
    nothing_claimed()


@pytest.mark.parametrize("mistake", ["tls", "dns"])
def test_a_url_that_can_never_work_fails_at_once_with_its_cause(
    crunch: Crunch, words: dict, mistake: str
) -> None:
    port = crunch.url.rsplit(":", 1)[1]
    url = f"https://127.0.0.1:{port}" if mistake == "tls" else "http://no-such-host.invalid:8000"

    result = crunch.run("loop", "--url", url, timeout=20)

    expected = {
        "tls": f"CommandError: The TLS handshake with '{url}/' failed (",
        "dns": f"CommandError: The host 'no-such-host.invalid' of '{url}/' is not known "
        "(its DNS lookup failed): check --url/CRUNCH_URL.",
    }[mistake]
    assert result.returncode == 2
    assert error_line(result).startswith(expected)
    assert "retrying" not in result.stderr
    nothing_claimed()


def test_ls_marks_a_running_rows_note_as_the_last_runs() -> None:
    from crunchclient.terminal.watch import ls_table

    rows = [
        {"slug": "w:a", "state": "running", "attempts": 2, "stage": 2, "note": "exit 1\nboom"},
        {"slug": "w:b", "state": "failed", "attempts": 3, "stage": 2, "note": "boom"},
    ]
    lines = ls_table(rows).splitlines()
    assert lines[2].split() == ["w:a", "running", "2", "Workflow", "(last", "run)", "boom"]
    assert lines[3].split() == ["w:b", "failed", "3", "Workflow", "boom"]
