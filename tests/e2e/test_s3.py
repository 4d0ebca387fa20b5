"""The end-to-end run against S3: django-storages pointed at moto's server on 127.0.0.1,
the client configured from a TOML settings file and from a legacy JSON one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crunch.models import Dataset
from tests.clientkit import RECORDS, SIX, Crunch, statuses
from tests.factories import make_client_user

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "crunch-e2e"
KEYS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}


@pytest.fixture
def moto_url(moto_endpoint: str) -> str:
    """The session's moto S3 server (tests/s3.py)."""
    return moto_endpoint


@pytest.fixture
def bucket(moto_url: str) -> Any:
    import boto3

    s3 = boto3.resource(
        "s3", endpoint_url=moto_url, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    bucket = s3.Bucket(BUCKET)
    bucket.objects.all().delete()  # the server lives for the session: start empty
    return bucket


def toml_settings(path: Path, url: str) -> Path:
    options = {"bucket_name": BUCKET, "endpoint_url": url, **KEYS}
    lines = [
        "[STORAGES.default]",
        'BACKEND = "storages.backends.s3.S3Storage"',
        "[STORAGES.default.OPTIONS]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def legacy_json_settings(path: Path, url: str) -> Path:
    """A settings file written for older Django: DEFAULT_FILE_STORAGE plus AWS_* keys."""
    path.write_text(json.dumps({
        "DEFAULT_FILE_STORAGE": "storages.backends.s3boto3.S3Boto3Storage",
        "AWS_STORAGE_BUCKET_NAME": BUCKET, "AWS_S3_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_REGION_NAME": "us-east-1",
    }, indent=2))  # fmt: skip
    return path


@pytest.mark.parametrize("settings_format", ["toml", "json", "none"])
def test_loop_against_s3(
    live_server: Any,
    settings: Any,
    bucket: Any,
    moto_url: str,
    tmp_path: Path,
    settings_format: str,
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": moto_url, **KEYS}},  # noqa: E501
    }  # fmt: skip
    write = toml_settings if settings_format == "toml" else legacy_json_settings
    settings_file = write(tmp_path / f"storage.{settings_format}", moto_url)
    if settings_format == "none":  # a node with no keys: files through the server (issue 25)
        settings_file = Path("")
    work = tmp_path / "client"
    work.mkdir()
    crunch = Crunch(
        url=live_server.url,
        token=make_client_user()[1],
        media=tmp_path,
        work=work,
        settings_file=settings_file,
    )
    workflow = "wc -c < input.txt > size.txt\necho more >> input.txt\nmkdir -p out && echo hi > out/hello.txt\n"  # noqa: E501
    project = crunch.project("Cloud", workflow)
    datasets = [crunch.dataset(project["slug"], f"d{i}") for i in range(2)]
    for dataset in datasets:
        bucket.put_object(Key=f"{dataset['base_file_path']}/input.txt", Body=b"12345\n")
    env = crunch.env
    if settings_format == "none":
        del env["CRUNCH_STORAGE_SETTINGS"]
    result = crunch.run("loop", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    for dataset in datasets:
        assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
        assert statuses(dataset["slug"]) == SIX
        prefix = dataset["base_file_path"] + "/"
        stored = {
            o.key[len(prefix) :]: o.get()["Body"].read().decode()
            for o in bucket.objects.filter(Prefix=prefix)
        }
        assert (
            set(stored) == {"input.txt", "size.txt", "out/hello.txt", ".crunch/script.sh"} | RECORDS
        )
        assert stored["input.txt"] == "12345\nmore\n"  # replaced under the same key
        assert stored["size.txt"].strip() == "6"
