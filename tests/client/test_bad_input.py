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
        "check --token/CRUNCH_TOKEN."
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
        "CommandError: No dataset has the slug 'bad:nope': dataset slugs look like 'project:dataset'. Did you mean 'bad:one'?"  # noqa: E501
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
    # Without storage settings a loop moves files through the server, unless told not to.
    direct = ["--transfer", "direct"] if unset == "CRUNCH_STORAGE_SETTINGS" else []
    result = crunch.run("loop", *direct, env=env)
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
        == "CommandError: 1 of 2 dataset(s) failed: see their notes with 'crunch why DATASET'."
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

    from crunchclient.cli import COMMANDS
    from tests.clientkit import CRUNCH

    result = subprocess.run([CRUNCH, "sprint"], capture_output=True, text=True, env=clean_env())
    assert (result.returncode, error_line(result)) == (
        2,
        f"CommandError: Unknown command 'sprint': use one of {', '.join(COMMANDS)} (crunch --help).",  # noqa: E501
    )


# ---------------------------------------------------------------------------- issue 11


def settings_file(path: Path, storage: str, options: str = "") -> Path:
    path.write_text(
        f"[STORAGES.default]\n{storage}\n"
        + (f"[STORAGES.default.OPTIONS]\n{options}\n" if options else "")
    )
    return path


FS = 'BACKEND = "django.core.files.storage.FileSystemStorage"'
S3 = 'BACKEND = "storages.backends.s3.S3Storage"'


@pytest.mark.parametrize(
    ("storage", "options", "message"),
    [
        (FS, 'locaton = "/data"', "STORAGES['default'] OPTIONS has the unknown key 'locaton' for FileSystemStorage (did you mean 'location'?): remove it or fix its name."),  # noqa: E501
        (S3, 'bucket_name = "b"\nacess_key = "AKIA-SECRET-1"', "STORAGES['default'] OPTIONS has the unknown key 'acess_key' for S3Storage (did you mean 'access_key'?): remove it or fix its name."),  # noqa: E501
        (FS, "location = 5", "STORAGES['default'] OPTIONS 'location' must be a string, not the integer 5: fix its value."),  # noqa: E501
        (S3, 'file_overwrite = "yes"', "STORAGES['default'] OPTIONS 'file_overwrite' must be a boolean, not the string 'yes': fix its value."),  # noqa: E501
        (S3, "secret_key = 12345678", "STORAGES['default'] OPTIONS 'secret_key' must be a string, not the integer: fix its value."),  # noqa: E501
        (f"{FS}\nlocation = \"/data\"", "", "STORAGES['default'] has the unknown key 'location': a storage has only BACKEND and OPTIONS; the backend's settings go in OPTIONS."),  # noqa: E501
        ('OPTIONS = "location=/data"', "", "STORAGES['default'] has no BACKEND: add the storage's class, e.g. BACKEND = \"django.core.files.storage.FileSystemStorage\"."),  # noqa: E501
        (f'{FS}\nOPTIONS = "location=/data"', "", "STORAGES['default'] OPTIONS must be a table of the backend's settings, not a string."),  # noqa: E501
        ("BACKEND = 3", "", "STORAGES['default'] BACKEND must be the dotted path of a storage class as a string, not 3."),  # noqa: E501
    ],
    ids=["unknown-key", "unknown-s3-key", "wrong-type", "wrong-bool", "secret-not-shown", "key-outside-options", "no-backend", "options-not-a-table", "backend-not-a-string"],  # noqa: E501
)  # fmt: skip
def test_storage_settings_malformed_storages(
    crunch: Crunch, pending: dict, tmp_path: Path, storage: str, options: str, message: str
) -> None:
    path = settings_file(tmp_path / "bad.toml", storage, options)
    result = crunch.run("next", "--storage-settings", str(path))
    assert (result.returncode, error_line(result)) == (
        2,
        f"CommandError: Storage settings file {str(path)!r}: {message}",
    )
    assert "12345678" not in result.stderr and "AKIA-SECRET-1" not in result.stderr
    nothing_claimed()


def test_storage_settings_storages_not_a_table(
    crunch: Crunch, pending: dict, tmp_path: Path
) -> None:
    path = tmp_path / "storage.json"
    path.write_text(json.dumps({"STORAGES": ["django.core.files.storage.FileSystemStorage"]}))
    result = crunch.run("next", "--storage-settings", str(path))
    assert (result.returncode, error_line(result)) == (
        2,
        f"CommandError: Storage settings file {str(path)!r}: STORAGES must be a table of "
        "storages (e.g. [STORAGES.default]), not a list.",
    )
    nothing_claimed()


def test_local_storage_location_missing(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    missing = tmp_path / "unmounted" / "media"
    path = settings_file(tmp_path / "storage.toml", FS, f"location = {json.dumps(str(missing))}")
    result = crunch.run("run", pending["slug"], "--storage-settings", str(path))
    assert (result.returncode, error_line(result)) == (
        2,
        f"CommandError: The local storage's location {str(missing)!r} is not a folder: mount "
        f"or create it, or fix OPTIONS location in the storage settings file {str(path)!r}.",
    )
    nothing_claimed()
    assert Dataset.objects.get().state == "pending"


@pytest.mark.parametrize("where", ["option", "environment"])
def test_token_with_a_newline(crunch: Crunch, pending: dict, where: str) -> None:
    token = f"{crunch.token}\nX-Injected: 1"
    if where == "option":
        result = crunch.run("next", "--token", token)
    else:
        result = crunch.run("next", env={**crunch.env, "CRUNCH_TOKEN": token})
    assert (result.returncode, error_line(result)) == (
        2,
        "CommandError: The token holds a newline: pass the token alone, e.g. "
        '--token "$(cat token.txt)" or CRUNCH_TOKEN=$(cat token.txt).',
    )
    assert crunch.token not in result.stderr + result.stdout  # never echoed
    nothing_claimed()


def test_token_with_a_trailing_newline_is_fine(crunch: Crunch, pending: dict) -> None:
    """``CRUNCH_TOKEN=$(cat file)`` keeps no newline, but a file read otherwise may."""
    result = crunch.run(
        "run", pending["slug"], env={**crunch.env, "CRUNCH_TOKEN": f"{crunch.token}\n"}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x/../bad:one"], "No dataset has the slug 'x/../bad:one': dataset slugs look like 'project:dataset'."),  # noqa: E501
        (["run", "bad:one/"], "No dataset has the slug 'bad:one/': dataset slugs look like 'project:dataset'. Did you mean 'bad:one'?"),  # noqa: E501
        (["run", "bad:one#x"], "No dataset has the slug 'bad:one#x': dataset slugs look like 'project:dataset'. Did you mean 'bad:one'?"),  # noqa: E501
        (["run", ".."], "No dataset has the slug '..': dataset slugs look like 'project:dataset'."),
        (["next", "--project", "x/../bad"], "No project has the slug 'x/../bad'."),
        (["loop", "--project", "bad?x=1"], "No project has the slug 'bad?x=1'. Did you mean 'bad'?"),  # noqa: E501
    ],
)  # fmt: skip
def test_slug_with_a_slash_is_one_path_segment(
    crunch: Crunch, pending: dict, args: list[str], message: str
) -> None:
    """Slugs are quoted in URLs: ``x/../bad:one`` names no dataset, it does not reach
    ``bad:one`` by its dot segments."""
    result = crunch.run(*args)
    assert (result.returncode, error_line(result)) == (7, f"CommandError: {message}")
    nothing_claimed()


def released_after_setup_fail(slug: str) -> None:
    assert statuses(slug) == [(1, 1), (1, 3)]
    dataset = Dataset.objects.get(slug=slug)
    assert (dataset.state, dataset.claim_id) == ("pending", None)


def test_dataset_folder_outside_storage(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("private")
    Dataset.objects.filter(pk=pending["id"]).update(base_file_path="../outside")
    result = crunch.run("run", pending["slug"])
    assert (result.returncode, error_line(result)) == (
        6,
        "CommandError: Dataset 'bad:one' failed at Setup (it will be retried): Refusing the "
        "folder '../outside' of dataset 'bad:one': it is not a folder inside the storage; give "
        "the dataset a relative base_file_path on the server.",
    )
    released_after_setup_fail(pending["slug"])
    assert not list(crunch.work.rglob("private.txt"))


def test_link_out_of_the_working_folder(crunch: Crunch, pending: dict, tmp_path: Path) -> None:
    """A link in the dataset's working folder that leads elsewhere is not written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (crunch.media / pending["base_file_path"] / "data").mkdir()
    (crunch.media / pending["base_file_path"] / "data" / "x.txt").write_text("x")
    workdir = crunch.work / "crunch-work" / "bad" / "one"
    workdir.mkdir(parents=True)
    (workdir / "data").symlink_to(outside)
    result = crunch.run("next")
    assert result.returncode == 6, result.stderr
    assert error_line(result) == (
        "CommandError: Dataset 'bad:one' failed at Setup (it will be retried): Refusing to "
        f"write into 'data': it links outside {str(workdir)!r}; remove the link."
    )
    released_after_setup_fail(pending["slug"])
    assert list(outside.iterdir()) == []


def test_key_escaping_s3_storage(
    crunch: Crunch, pending: dict, moto_endpoint: str, tmp_path: Path
) -> None:
    from tests.s3 import make_s3_storage

    storage = make_s3_storage(moto_endpoint)
    base = pending["base_file_path"]
    client = storage.connection.meta.client
    client.put_object(Bucket=storage.bucket_name, Key=f"{base}/ok.txt", Body=b"ok")
    client.put_object(Bucket=storage.bucket_name, Key=f"{base}/../../escape.txt", Body=b"x")
    options = {
        "bucket_name": storage.bucket_name,
        "endpoint_url": moto_endpoint,
        "access_key": "testing",
        "secret_key": "testing",
        "region_name": "us-east-1",
    }
    path = settings_file(
        tmp_path / "s3.toml", S3, "\n".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    )
    result = crunch.run("run", pending["slug"], "--storage-settings", str(path))
    assert result.returncode == 6, result.stderr
    assert error_line(result) == (
        "CommandError: Dataset 'bad:one' failed at Setup (it will be retried): Refusing path "
        "'../../escape.txt' from storage: it escapes the dataset folder; remove or rename it "
        "in storage."
    )
    released_after_setup_fail(pending["slug"])
    assert not list(tmp_path.rglob("escape.txt"))


def test_huge_stderr_line_still_records_the_fail(crunch: Crunch) -> None:
    """A 3 MB line on stderr: the Fail note keeps its last 8 KiB, cut between characters,
    and the dataset is reported and released; the log keeps the whole line."""
    line = "\u00e9" * 1_500_001  # 3,000,002 bytes: no cut at 8 KiB falls between characters
    workflow = f"python3 -c \"import sys; sys.stderr.write('start\\n' + '{line[:1]}' * {len(line)} + '\\n')\"\nexit 4\n"  # noqa: E501
    project = crunch.project("Loud", workflow, max_attempts=1)
    dataset = crunch.dataset(project["slug"], "one")
    result = crunch.run("run", dataset["slug"], "--quiet", timeout=300)
    assert result.returncode == 10
    assert len(error_line(result)) < 1000, result.stderr[-2000:]
    assert statuses(dataset["slug"]) == [(1, 1), (1, 2), (2, 1), (2, 3)], error_line(result)
    failed = Dataset.objects.get(slug=dataset["slug"])
    assert (failed.state, failed.claim_id) == ("failed", None)
    note = Status.objects.get(dataset=failed, stage=2, state=3).note
    assert 4096 < len(note.encode()) <= 8 * 1024
    head = "The workflow exited with code 4. Last lines of stderr:\n"
    assert note.startswith(head) and set(note[len(head) :]) == {"\u00e9"}
    log = crunch.work / "crunch-work" / "loud" / "one" / ".crunch" / "workflow.log"
    assert log.read_text(encoding="utf-8") == f"start\n{line}\n"
