"""The workflow is code from the server: it runs without the client's secrets, and neither
its log nor the client's messages show them, on local storage and on S3 (moto). Each run
also tells the server the SHA-256 of the workflow it ran."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from crunch.models import Dataset, Project, Status
from tests.clientkit import SIX, Crunch, statuses

pytestmark = pytest.mark.django_db(transaction=True)

ENV_WORKFLOW = "env > env.txt\nenv\necho done >&2\n"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIACLIENTENVKEY0001",
    "AWS_SECRET_ACCESS_KEY": "client-env-aws-secret-0001",
    "AWS_SESSION_TOKEN": "client-env-aws-session-0001",
    "AWS_PROFILE": "crunch-profile",
}


def workflow_view(stored: dict[str, str]) -> str:
    """What the workflow saw and said: its env file and its log."""
    return stored["env.txt"] + stored[".crunch/workflow.log"]


def environment(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_workflow_gets_no_token_and_no_aws_keys_locally(crunch: Crunch, tmp_path: Path) -> None:
    settings_password = "pw-from-the-settings-file-0001"
    with crunch.settings_file.open("a") as settings:  # a secret the settings file holds
        settings.write(
            '\n[STORAGES.backup]\nBACKEND = "x.Y"\n[STORAGES.backup.OPTIONS]\n'
            f'password = "{settings_password}"\n'
        )
    project = crunch.project("Secrets", ENV_WORKFLOW)
    dataset = crunch.dataset(project["slug"], "one", {"in.txt": "x"})
    env = {
        **crunch.env, **AWS, "HARMLESS": "visible", "COPY_OF_TOKEN": crunch.token,
        "SFTP_PASS": settings_password,
    }  # fmt: skip
    result = crunch.run("run", dataset["slug"], "--quiet", "--pass-env", "AWS_PROFILE", env=env)
    assert result.returncode == 0, result.stderr
    assert statuses(dataset["slug"]) == SIX
    seen = workflow_view(crunch.stored(dataset))
    for secret in (crunch.token, settings_password, *AWS.values()):
        if secret != AWS["AWS_PROFILE"]:
            assert secret not in seen
            assert secret not in result.stdout + result.stderr
    names = environment(crunch.stored(dataset)["env.txt"])
    assert names["HARMLESS"] == "visible" and names["AWS_PROFILE"] == "crunch-profile"
    assert names["CRUNCH_DATASET"] == dataset["slug"]
    assert not {"CRUNCH_TOKEN", "COPY_OF_TOKEN", "SFTP_PASS", "AWS_ACCESS_KEY_ID"} & set(names)
    assert "done" in seen  # the log is there, and holds the workflow's stderr


def test_passed_token_reaches_the_workflow_but_not_its_log(crunch: Crunch) -> None:
    """--pass-env gives a hidden variable back; the log still masks its value."""
    project = crunch.project(
        "Passed", 'printf %s "$CRUNCH_TOKEN" > token.txt\necho "token: $CRUNCH_TOKEN"\n'
    )
    dataset = crunch.dataset(project["slug"], "one")
    result = crunch.run("run", dataset["slug"], "--quiet", "--pass-env", "CRUNCH_TOKEN")
    assert result.returncode == 0, result.stderr
    stored = crunch.stored(dataset)
    assert stored["token.txt"] == crunch.token
    assert stored[".crunch/workflow.log"] == "token: ***\n"
    assert crunch.token not in result.stdout


def test_workflow_gets_no_secrets_on_s3(
    live_server: Any, settings: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    from tests.factories import make_client_user

    bucket_name = f"crunch-secrets-{uuid.uuid4().hex[:8]}"
    keys = {"access_key": "AKIASETTINGSFILE0001", "secret_key": "settings-file-s3-secret-0001"}
    options = {
        "bucket_name": bucket_name, "endpoint_url": moto_endpoint, "region_name": "us-east-1",
        "file_overwrite": True, **keys,
    }  # fmt: skip
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    bucket = boto3.resource(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).Bucket(bucket_name)  # fmt: skip
    bucket.create()
    settings_file = tmp_path / "s3.toml"
    settings_file.write_text(
        '[STORAGES.default]\nBACKEND = "storages.backends.s3.S3Storage"\n'
        "[STORAGES.default.OPTIONS]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
    )
    work = tmp_path / "client"
    work.mkdir()
    crunch = Crunch(
        url=live_server.url, token=make_client_user()[1], media=tmp_path, work=work,
        settings_file=settings_file,
    )  # fmt: skip
    project = crunch.project("Cloud secrets", ENV_WORKFLOW)
    dataset = crunch.dataset(project["slug"], "one")
    bucket.put_object(Key=f"{dataset['base_file_path']}/in.txt", Body=b"x")
    aws = {name: value for name, value in AWS.items() if name != "AWS_PROFILE"}  # boto reads it
    env = {**crunch.env, **aws, "S3_SECRET_COPY": keys["secret_key"]}
    result = crunch.run("run", dataset["slug"], "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    prefix = dataset["base_file_path"] + "/"
    stored = {
        o.key[len(prefix) :]: o.get()["Body"].read().decode()
        for o in bucket.objects.filter(Prefix=prefix)
    }
    seen = workflow_view(stored)
    for secret in (crunch.token, *keys.values(), *aws.values()):
        assert secret not in seen
        assert secret not in result.stdout + result.stderr
    assert "S3_SECRET_COPY" not in environment(stored["env.txt"])
    assert "CRUNCH_DATASET" in environment(stored["env.txt"])


def workflow_start(slug: str) -> Status:
    return Status.objects.get(dataset__slug=slug, stage=2, state=1)


def test_workflow_start_carries_the_sha256_of_the_project_workflow(crunch: Crunch) -> None:
    project = crunch.project("Provenance", "echo caf\u00e9 > out.txt\r\n")
    dataset = crunch.dataset(project["slug"], "one")
    result = crunch.run("run", dataset["slug"], "--quiet")
    assert result.returncode == 0, result.stderr
    stored = Project.objects.get(slug=project["slug"])
    expected = hashlib.sha256(stored.workflow.encode()).hexdigest()
    assert stored.workflow_sha256 == expected
    assert workflow_start(dataset["slug"]).workflow_sha256 == expected
    assert Status.objects.exclude(stage=2, state=1).filter(workflow_sha256="").count() == 5


def test_workflow_start_carries_the_sha256_of_the_path_file(crunch: Crunch, tmp_path: Path) -> None:
    project = crunch.project("Local file", "exit 1\n")
    dataset = crunch.dataset(project["slug"], "one")
    local = tmp_path / "mine.sh"
    local.write_bytes(b"echo mine > mine.txt\r\n# \xff not UTF-8\n")
    result = crunch.run("run", dataset["slug"], "--quiet", "--path", str(local))
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    assert workflow_start(dataset["slug"]).workflow_sha256 == digest
    assert Project.objects.get(slug=project["slug"]).workflow_sha256 != digest
