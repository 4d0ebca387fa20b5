"""Issue 25's "Must show" 1 and 3: a worker with only the URL and a token (files through
the server) ends as a direct run does, and survives kills and server restarts.

Real parts throughout: the client is the ``crunch`` subprocess, the server live_server or
gunicorn, the storage a local folder or moto's S3. A slow link (``Relay``, a TCP relay
that passes a few MiB a second) keeps a transfer going long enough to kill the client or
restart the server while it is under way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from crunch.models import Dataset, Project, Status
from tests.clientkit import CRUNCH, SIX, Crunch, clean_env, free_port, statuses
from tests.clientkit import write_local_settings
from tests.e2e.test_s3 import BUCKET, KEYS, toml_settings
from tests.factories import make_client_user, make_user
from tests import servers

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
PARTIAL = ".crunch-partial-"
COMPARED = (".crunch/setup_md5_checksums.json", ".crunch/upload_md5_checksums.json",
            ".crunch/deleted.txt", ".crunch/script.sh")  # fmt: skip

# Modifies one input, writes in a subfolder, deletes one input; with $LARGE, a file large
# enough for a multipart upload. The same bytes on every run.
WORKFLOW = """\
set -eu
echo changed >> edit.txt
mkdir -p out/deep
md5sum big.bin empty.txt > out/deep/sums.txt
: > out/empty.txt
rm gone.txt
if [ "${LARGE:-0}" -gt 0 ]; then yes crunch | head -c "$LARGE" > out/large.bin; fi
"""


def data(size: int, seed: int = 25) -> bytes:
    return random.Random(seed).randbytes(size)


INPUTS = {
    "empty.txt": b"",
    "edit.txt": b"first line\n",
    "gone.txt": b"deleted by the workflow\n",
    "sub/small.txt": b"x" * 3000,
    "big.bin": data(20 * MiB + 7),  # over the 16 MiB batch limit: a batch of its own
}


def md5(blob: bytes) -> str:
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def no_storage_env(crunch: Crunch, **extra: str) -> dict[str, str]:
    """A node's environment with the URL and the token, and nothing about storage."""
    return clean_env(CRUNCH_URL=crunch.url, CRUNCH_TOKEN=crunch.token, **extra)


@dataclass
class Ran:
    stored: dict[str, bytes]
    notes: list[str]


def run_project(
    crunch: Crunch, mode: str, env: dict[str, str], put: Callable[[str, str, bytes], None],
    stored: Callable[[str], dict[str, bytes]],
) -> Ran:  # fmt: skip
    project = crunch.project(f"Parity {mode}", WORKFLOW)
    dataset = crunch.dataset(project["slug"], "d")
    for rel, blob in INPUTS.items():
        put(dataset["base_file_path"], rel, blob)
    result = crunch.run("loop", "--project", project["slug"], "--quiet", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert statuses(dataset["slug"]) == SIX
    notes = list(
        Status.objects.filter(dataset__slug=dataset["slug"], state=2)
        .order_by("stage")
        .values_list("note", flat=True)
    )
    return Ran(stored(dataset["base_file_path"]), notes)


def assert_same(direct: Ran, server: Ran, large: int) -> None:
    """The stored files and the records agree, path by path and byte by byte."""
    assert not [path for path in server.stored if PARTIAL in path]
    assert set(direct.stored) == set(server.stored)
    for path in sorted(direct.stored):
        if not path.startswith(".crunch/") or path in COMPARED:
            assert direct.stored[path] == server.stored[path], path
    setup = json.loads(server.stored[".crunch/setup_md5_checksums.json"])
    assert setup == {rel: md5(blob) for rel, blob in INPUTS.items()}
    upload = json.loads(server.stored[".crunch/upload_md5_checksums.json"])
    assert set(upload) == set(INPUTS) - {"gone.txt"} | {"out/deep/sums.txt", "out/empty.txt"} | (
        {"out/large.bin"} if large else set()
    )
    assert upload == {path: md5(server.stored[path]) for path in upload}
    assert server.stored[".crunch/deleted.txt"] == b"gone.txt\n"
    assert server.stored["edit.txt"] == b"first line\nchanged\n"
    assert server.stored["big.bin"] == INPUTS["big.bin"]
    if large:
        assert len(server.stored["out/large.bin"]) == large
    # The same work said the same way: Setup's line, and Upload's counts.
    assert direct.notes[0] == server.notes[0]
    assert direct.notes[0].startswith(f"{len(INPUTS)} file(s) downloaded (20.0 MiB), 0 already")
    assert direct.notes[2].split("; ")[1] == server.notes[2].split("; ")[1]


# ------------------------------------------------------------------------ 1. parity


def s3_bucket(endpoint: str) -> Any:
    """test_s3's bucket on this worker's moto server, emptied."""
    import boto3

    s3 = boto3.resource(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    bucket = s3.Bucket(BUCKET)
    bucket.objects.all().delete()
    return bucket


def test_local_storage_through_the_server_matches_a_direct_run(crunch: Crunch) -> None:
    def put(base: str, rel: str, blob: bytes) -> None:
        path = crunch.media / base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)

    def stored(base: str) -> dict[str, bytes]:
        root = crunch.media / base
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E501

    direct = run_project(crunch, "direct", crunch.env, put, stored)
    server = run_project(crunch, "server", no_storage_env(crunch), put, stored)
    assert_same(direct, server, large=0)


def test_s3_through_signed_links_matches_a_direct_run(
    live_server: Any, settings: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": moto_endpoint, **KEYS}},  # noqa: E501
    }  # fmt: skip
    work = tmp_path / "client"
    work.mkdir()
    crunch = Crunch(
        url=live_server.url, token=make_client_user()[1], media=tmp_path, work=work,
        settings_file=toml_settings(tmp_path / "storage.toml", moto_endpoint),
    )  # fmt: skip
    bucket = s3_bucket(moto_endpoint)
    large = 64 * MiB + 5  # over the single-PUT limit: a multipart upload, a link per part

    def put(base: str, rel: str, blob: bytes) -> None:
        bucket.put_object(Key=f"{base}/{rel}", Body=blob)

    def stored(base: str) -> dict[str, bytes]:
        return {
            o.key[len(base) + 1 :]: o.get()["Body"].read()
            for o in bucket.objects.filter(Prefix=base + "/")
        }

    extra = {"LARGE": str(large)}
    direct = run_project(crunch, "direct", {**crunch.env, **extra}, put, stored)
    server = run_project(crunch, "server", no_storage_env(crunch, **extra), put, stored)
    assert_same(direct, server, large=large)
