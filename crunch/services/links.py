"""Signed links for storages that can sign URLs (S3): the bytes never pass through Django.

A link names one exact key under the dataset's folder, for one method, and stops working
when the grant does (at most the claim's lease; ``CRUNCH_LINK_SECONDS`` at most). A file
over the single-PUT limit is uploaded in parts, one link each, and completed here with
the key computed again from its name, so an upload id cannot land on another key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from crunch.conf import crunch_settings
from crunch.services.transfers import Grant, Refused, s3_key, s3_parts

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Bytes above which an upload goes in parts (below it, S3's ETag is the file's MD5)."""
PART_SIZE = 16 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit
MAX_SIZE = 5 * 1024**4  # S3's largest object: 5 TiB


def signs(grant: Grant) -> bool:
    """Whether files move through signed links (S3, unless CRUNCH_PRESIGN is False)."""
    return bool(crunch_settings.PRESIGN) and s3_parts(grant.place.storage) is not None


@dataclass(frozen=True)
class Link:
    """How to move one file: ``url`` for one GET or PUT, or ``parts`` (one PUT URL each,
    ``part_size`` bytes but the last) then a ``complete`` call with ``upload_id``."""

    path: str
    method: str
    url: str | None = None
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"path": self.path, "method": self.method, "url": self.url}
        if self.upload_id is not None:
            answer |= {
                "upload_id": self.upload_id,
                "part_size": self.part_size,
                "parts": self.parts,
            }
        return answer


class Signer:
    """Signs the links of one grant."""

    def __init__(self, grant: Grant) -> None:
        parts = s3_parts(grant.place.storage)
        assert parts is not None, "signed links need an S3 storage"
        self.client, self.bucket, self.location = parts
        self.grant = grant
        self.seconds = max(1, math.floor((grant.expires - timezone.now()).total_seconds()))

    def key(self, path: str) -> str:
        return s3_key(self.location, self.grant.name(path))

    def sign(self, operation: str, **params: Any) -> str:
        url: str = self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=self.seconds
        )
        return url

    def read(self, path: str) -> Link:
        return Link(path=path, method="GET", url=self.sign("get_object", Key=self.key(path)))

    def write(self, path: str, size: int) -> Link:
        if size < MULTIPART_THRESHOLD:
            return Link(path=path, method="PUT", url=self.sign("put_object", Key=self.key(path)))
        part_size = part_size_of(size)
        key = self.key(path)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        urls = [
            self.sign("upload_part", Key=key, UploadId=upload_id, PartNumber=number)
            for number in range(1, math.ceil(size / part_size) + 1)
        ]
        return Link(path=path, method="PUT", upload_id=upload_id, part_size=part_size, parts=urls)

    def complete(self, path: str, upload_id: str, etags: list[str]) -> None:
        """Join the parts uploaded through the links of ``write``."""
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key(path), UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, 1)]
            },
        )  # fmt: skip


def part_size_of(size: int) -> int:
    """The part size of a multipart upload of ``size`` bytes: 16 MiB, more past 10,000 parts."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS))


def links_for(size: int) -> int:
    """How many links writing a file of ``size`` bytes takes: one, or one a part."""
    return 1 if size < MULTIPART_THRESHOLD else math.ceil(size / part_size_of(size))


def write_sizes(items: Any) -> list[tuple[Any, int]]:
    """A links request's ``write`` list as (path, size), sizes checked; at most MAX_PARTS
    links in all, so one request cannot make the server sign millions."""
    if not isinstance(items, list):
        raise Refused("'write' must be a list of {path, size} objects.")
    checked: list[tuple[Any, int]] = []
    for item in items:
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise Refused("Each file to write needs its size in bytes (0 to 5 TiB).")
        checked.append((item.get("path"), size))
    if sum(links_for(size) for _path, size in checked) > MAX_PARTS:
        raise Refused(f"Ask for at most {MAX_PARTS} links (parts included) at once.")
    return checked
