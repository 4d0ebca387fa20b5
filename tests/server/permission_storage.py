"""Where the permission matrix's files are: local storage, or S3 for the rows marked (S3).

The rows of signed links run on moto's S3 server, with one bucket for the module.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from crunch.models import Dataset


@dataclass(frozen=True)
class Bucket:
    """An S3 bucket on moto's server, for the rows marked (S3)."""

    endpoint: str
    name: str
    client: Any

    def storages(self) -> dict[str, Any]:
        options = {
            "bucket_name": self.name, "endpoint_url": self.endpoint, "region_name": "us-east-1",
            "access_key": "testing", "secret_key": "testing", "file_overwrite": True,
        }  # fmt: skip
        return {
            **settings.STORAGES,
            "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        }

    def has(self, key: str) -> bool:
        return int(self.client.list_objects_v2(Bucket=self.name, Prefix=key)["KeyCount"]) > 0


_buckets: list[Bucket] = []


def bucket(request: pytest.FixtureRequest) -> Bucket:
    """One bucket for the module, made when the first (S3) row runs."""
    if not _buckets:
        import boto3

        endpoint = request.getfixturevalue("moto_endpoint")
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        name = f"permissions-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name)
        _buckets.append(Bucket(endpoint, name, client))
    return _buckets[0]


def place_files(
    files: list[Dataset], mine: Dataset, media: Path, s3: Bucket | None
) -> dict[str, str]:
    """``result.txt`` in each of ``files``; on S3 also a multipart upload of ``big.bin`` in
    ``mine``, one part sent: {"upload_id", "etag"} for the rows that complete it."""
    if s3 is None:
        for made in files:
            folder = media / made.base_file_path
            folder.mkdir(parents=True)
            (folder / "result.txt").write_text("result\n")
        return {"upload_id": "", "etag": ""}
    for made in files:
        key = f"{made.base_file_path}/result.txt"
        s3.client.put_object(Bucket=s3.name, Key=key, Body=b"result\n")
    key = f"{mine.base_file_path}/big.bin"
    started = s3.client.create_multipart_upload(Bucket=s3.name, Key=key)["UploadId"]
    part = s3.client.upload_part(
        Bucket=s3.name, Key=key, UploadId=started, PartNumber=1, Body=b"big\n"
    )
    return {"upload_id": started, "etag": part["ETag"]}
