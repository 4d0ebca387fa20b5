"""Every bad input of issue 3: one line on stderr, a documented exit code, no traceback,
and nothing claimed when the error is found before claiming."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch, clean_env, error_line, free_port, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pending(crunch: Crunch) -> dict:
    project = crunch.project("Bad", "echo ok > ok.txt\n")
    return crunch.dataset(project["slug"], "one", {"in.txt": "x"})


def nothing_claimed() -> None:
    assert list(Dataset.objects.values_list("state", "attempts")) == [("pending", 0)]
    assert not Status.objects.exists()


def test_wrong_token(crunch: Crunch, pending: dict) -> None:
    result = crunch.run("next", "--token", "not-a-token")
    assert result.returncode == 4
    assert error_line(result) == (
        f"CommandError: The server at {crunch.url + '/'!r} refused the token (401 Invalid token.): "
        "check --token/CRUNCH_TOKEN and that its user is in the 'crunch clients' group."
    )
    nothing_claimed()


def test_server_unreachable_after_retries(crunch: Crunch, pending: dict) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    result = crunch.run("loop", "--url", url, "--retry-for", "1")
    assert result.returncode == 3
    assert error_line(result) == (
        f"CommandError: Cannot reach the crunch server at {url!r} (ConnectionError on POST next/) "
        "after retrying for 1s: check --url/CRUNCH_URL and that the server is running."
    )
    assert "retrying in" in result.stderr  # it did back off and retry
    nothing_claimed()


def test_unknown_dataset_slug(crunch: Crunch, pending: dict) -> None:
    result = crunch.run("run", "bad:nope")
    assert result.returncode == 7
    assert error_line(result) == (
        "CommandError: No dataset has the slug 'bad:nope': dataset slugs look like 'project:dataset'."  # noqa: E501
    )
    nothing_claimed()


def test_unknown_project(crunch: Crunch, pending: dict) -> None:
    result = crunch.run("next", "--project", "nope")
    assert (result.returncode, error_line(result)) == (
        7,
        "CommandError: No project has the slug 'nope'.",
    )
    nothing_claimed()


def test_storage_settings_file_missing(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = crunch.run("next", "--storage-settings", str(missing))
    assert result.returncode == 2
    assert error_line(result) == (
        f"CommandError: Storage settings file {str(missing)!r} does not exist: "
        "check --storage-settings or CRUNCH_STORAGE_SETTINGS."
    )
    nothing_claimed()


def test_storage_settings_unknown_suffix(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    path = tmp_path / "storage.yaml"
    path.write_text("STORAGES: {}\n")
    result = crunch.run("next", "--storage-settings", str(path))
    assert result.returncode == 2
    assert error_line(result) == (
        f"CommandError: Storage settings file {str(path)!r} has the unknown suffix '.yaml': "
        "use a .toml or .json file."
    )
    nothing_claimed()


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.toml", '[STORAGES.default]\nBACKEND = "x"\nlocation = = 3\n', "not valid TOML at line 3: Invalid value"),  # noqa: E501
        ("bad.json", '{\n  "MEDIA_ROOT": "/tmp",\n  "STORAGES": {,}\n}\n', "not valid JSON at line 3: Expecting property name enclosed in double quotes"),  # noqa: E501
    ],
)  # fmt: skip
def test_storage_settings_malformed(
    crunch: Crunch, pending: dict, tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = crunch.run("next", env={**crunch.env, "CRUNCH_STORAGE_SETTINGS": str(path)})
    assert result.returncode == 2
    assert (
        error_line(result)
        == f"CommandError: Storage settings file {str(path)!r} is {reason}. Fix that line."
    )
    nothing_claimed()


def test_storage_settings_not_a_table(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    result = crunch.run("next", "--storage-settings", str(path))
    assert result.returncode == 2
    assert error_line(result) == (
        f"CommandError: Storage settings file {str(path)!r} must hold a table of settings "
        "at the top level, not a list."
    )


def test_storage_backend_not_installed(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    path = tmp_path / "storage.json"
    path.write_text(
        json.dumps({"STORAGES": {"default": {"BACKEND": "nosuchpackage.storage.Storage"}}})
    )
    result = crunch.run("next", "--storage-settings", str(path))
    assert result.returncode == 2
    assert error_line(result) == (
        "CommandError: Storage backend 'nosuchpackage.storage.Storage' cannot be imported "
        "(No module named 'nosuchpackage'): install its package, e.g. pip install "
        "'django-crunch[s3]' for S3."
    )
    nothing_claimed()


def test_snakemake_not_installed(crunch: Crunch, pending: dict) -> None:
    hide = "import sys; sys.modules['snakemake'] = None; from crunchclient.cli import main; sys.exit(main())"  # noqa: E501
    result = crunch.run("next", "--workflow", "snakemake", command=[sys.executable, "-c", hide])
    assert result.returncode == 2
    assert error_line(result) == (
        "CommandError: --workflow snakemake needs Snakemake, which is not installed: "
        "pip install 'django-crunch[snakemake]'."
    )
    nothing_claimed()


def test_project_without_workflow(crunch: Crunch) -> None:
    project = crunch.project("Empty", "")
    crunch.dataset(project["slug"], "one")
    message = (
        "CommandError: Project 'empty' has no workflow: set one on the project (admin or API) "
        "or pass --path with a local workflow file."
    )
    for args in (["next", "--project", "empty"], ["run", "empty:one"], ["loop"]):
        result = crunch.run(*args)
        assert (result.returncode, error_line(result)) == (2, message), args
        nothing_claimed()


def test_directory_not_writable(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = crunch.run("next", "--directory", str(blocker / "work"))
    assert result.returncode == 2
    assert error_line(result) == (
        f"CommandError: Working directory {str(blocker / 'work')!r} is not writable (Not a directory): "  # noqa: E501
        "pass --directory with a folder you can write to."
    )
    nothing_claimed()


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        (
            "CRUNCH_TOKEN",
            "No token given: pass --token or set CRUNCH_TOKEN (no terminal to prompt on).",
        ),
        (
            "CRUNCH_URL",
            "No server url given: pass --url or set CRUNCH_URL (no terminal to prompt on).",
        ),
        (
            "CRUNCH_STORAGE_SETTINGS",
            "No storage settings file given: pass --storage-settings or set CRUNCH_STORAGE_SETTINGS "  # noqa: E501
            "(no terminal to prompt on).",
        ),
    ],
)
def test_missing_value_without_a_terminal(
    crunch: Crunch, pending: dict, unset: str, message: str
) -> None:
    env = {k: v for k, v in crunch.env.items() if k != unset}
    result = crunch.run("loop", env=env)
    assert (result.returncode, error_line(result)) == (2, f"CommandError: {message}")
    nothing_claimed()


def test_bad_option_value(crunch: Crunch, pending: dict) -> None:
    result = crunch.run("loop", "--time-limit", "soon")
    assert result.returncode == 2
    assert error_line(result).endswith(
        "argument --time-limit: 'soon' is not a duration: use e.g. 2h, 30m, 90s or 1h30m."
    )
    nothing_claimed()


def test_dataset_held_by_another_client(crunch: Crunch, pending: dict) -> None:
    crunch.api("POST", f"datasets/{pending['slug']}/claim/", holder="someone else")
    result = crunch.run("run", pending["slug"])
    assert result.returncode == 8
    assert (
        error_line(result)
        == f"CommandError: Dataset {pending['slug']!r} is claimed by 'someone else'."
    )


def test_failing_workflow_is_reported_and_the_loop_goes_on(crunch: Crunch) -> None:
    workflow = 'if [ -f fail.txt ]; then echo "step 1 ok"; echo "boom: bad input" >&2; exit 3; fi\necho ok > ok.txt\n'  # noqa: E501
    project = crunch.project("Mixed", workflow, max_attempts=1)
    bad = crunch.dataset(project["slug"], "bad", {"fail.txt": "x"})
    good = crunch.dataset(project["slug"], "good", {"in.txt": "x"})
    result = crunch.run("loop", "--quiet")
    assert result.returncode == 10
    assert "Processed 2 dataset(s): 1 completed, 1 failed" in result.stdout
    assert (
        error_line(result)
        == "CommandError: 1 of 2 dataset(s) failed: see their notes on the server."
    )
    assert statuses(bad["slug"]) == [(1, 1), (1, 2), (2, 1), (2, 3)]
    failed = Dataset.objects.get(slug=bad["slug"])
    assert failed.state == "failed"
    assert failed.note == "The workflow exited with code 3. Last lines of stderr:\nboom: bad input"
    assert Dataset.objects.get(slug=good["slug"]).state == "completed"
    assert "boom: bad input" in result.stderr  # shown live too


def test_failing_workflow_with_next(crunch: Crunch) -> None:
    project = crunch.project("Fails", "exit 5\n")
    crunch.dataset(project["slug"], "one")
    result = crunch.run("next")
    assert result.returncode == 10
    assert error_line(result) == (
        "CommandError: Dataset 'fails:one' failed at Workflow (it will be retried): "
        "The workflow exited with code 5 and wrote nothing to stderr."
    )
    assert Dataset.objects.get().state == "pending"  # attempts left


def test_unknown_command() -> None:
    import subprocess

    from tests.clientkit import CRUNCH

    result = subprocess.run([CRUNCH, "sprint"], capture_output=True, text=True, env=clean_env())
    assert (result.returncode, error_line(result)) == (
        2,
        "CommandError: Unknown command 'sprint': use one of run, next, loop, retry (crunch --help).",  # noqa: E501
    )
