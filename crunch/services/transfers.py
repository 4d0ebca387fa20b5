"""Files through the server: who may read or write a dataset's files, and what is there.

A node that holds no storage keys moves a dataset's files through the API (``--transfer
server``). One rule decides every such request, in ``grant()``:

- reading needs the view role on the project (viewers and maintainers download, a
  worker reads the dataset it holds);
- writing needs a live claim on the dataset, held by the user, who still has the worker
  role: its id is sent with every write, and a released or expired claim writes nothing;
- every name is a clean path under the dataset's folder (``clean_file_path``), so no
  link, key or name reaches another dataset.

How the bytes then move is ``links`` (storages that sign URLs: S3) or ``streams``
(every other storage, local disk included).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.utils import timezone

from crunch.access import Action, datasets_where
from crunch.choices import DatasetState
from crunch.conf import crunch_settings
from crunch.constants import PARTIAL_MARK, SETUP_CHECKSUMS, UPLOAD_CHECKSUMS, record_path
from crunch.exceptions import LeaseExpired
from crunch.models import Dataset
from crunch.services.files import Place, dataset_place, is_plain_path

MAX_NAMES = 1000
"""Files one links or bundle request may name."""


class Refused(Exception):
    """A name that is not a clean path under the dataset's folder (400)."""


class Forbidden(Exception):
    """A write by someone who may see the dataset but not process it (403)."""


@dataclass(frozen=True)
class Grant:
    """What one request may do on one dataset, decided once by ``grant()``."""

    dataset: Dataset
    place: Place
    write: bool
    expires: datetime.datetime
    """When links handed out under this grant stop working."""

    def name(self, path: str) -> str:
        """The storage name of ``path`` (already checked) under the dataset's folder."""
        return self.place.name(path)


def link_seconds() -> int:
    return int(crunch_settings.LINK_SECONDS)


def grant(user: Any, slug: str, *, claim: str | None = None, write: bool = False) -> Grant:
    """The one access rule of files through the server (see the module's docstring).

    Dataset.DoesNotExist (404) when the user may not see the dataset or its folder is
    unsafe; Forbidden (403) for a write by one who may see it but not process it;
    LeaseExpired (409) when the claim sent is not the dataset's live claim held by the user.
    """
    action = Action.PROCESS if write else Action.VIEW
    try:
        dataset = datasets_where(user, action).select_related("project").get(slug=slug)
    except Dataset.DoesNotExist:
        if write and datasets_where(user, Action.VIEW).filter(slug=slug).exists():
            raise Forbidden(
                f"You may not write the files of dataset {slug!r}: that needs the worker "
                "role on its project and the dataset's claim."
            ) from None
        raise
    now = timezone.now()
    expires = now + datetime.timedelta(seconds=link_seconds())
    if write or claim:
        claim_id = parse_claim(claim)
        if (
            claim_id is None
            or dataset.claim_id != claim_id
            or dataset.state != DatasetState.RUNNING
            or dataset.claim_user_id != getattr(user, "pk", None)
            or dataset.lease_expires is None
            or dataset.lease_expires <= now
        ):
            raise LeaseExpired(
                f"The claim sent for dataset {dataset.slug!r} is not live: it was released, "
                "expired or never held; no file was read or written."
            )
        expires = min(expires, dataset.lease_expires)
    place = dataset_place(dataset)
    if place is None:
        raise Dataset.DoesNotExist(f"Dataset {slug!r} has no safe folder in storage.")
    return Grant(dataset=dataset, place=place, write=write, expires=expires)


def parse_claim(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def clean_file_path(path: Any) -> str:
    """``path`` as a clean relative path under the dataset's folder, or Refused.

    No empty, absolute or ``..`` path, no backslash, NUL or control character, no name
    that a half-written file has: a name can never reach outside the folder.
    """
    if not isinstance(path, str) or not is_plain_path(path) or len(path) > 1024:
        raise Refused(f"Refusing the file name {str(path)[:200]!r}: not a clean relative path.")
    if PARTIAL_MARK in path:
        raise Refused(f"Refusing the file name {path[:200]!r}: it is a half-written file's.")
    return path


def clean_file_paths(paths: Any) -> list[str]:
    """A request's list of names, each checked (see ``clean_file_path``)."""
    if not isinstance(paths, list) or len(paths) > MAX_NAMES:
        raise Refused(f"Send a list of at most {MAX_NAMES} file names.")
    return [clean_file_path(path) for path in paths]


@dataclass(frozen=True)
class FileInfo:
    """One stored file of a dataset, as the manifest lists it."""

    path: str
    size: int
    mtime: float | None
    md5: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime": self.mtime, "md5": self.md5}


def manifest(grant: Grant, *, under: str = "", tidy: bool = False) -> list[FileInfo]:
    """Every file of the dataset (under the folder ``under``, already a clean path): size,
    modification time and MD5 where known.

    The MD5 is the store's own (S3's single-part ETag), else the run records', when the
    record is newer than the file (a file changed since has no MD5 here). With tidy (a
    run's Setup, holding the claim), what a killed upload left half-written on the
    server's disk is removed.
    """
    place = grant.place
    if tidy and grant.write and place.real_base is not None:
        remove_partials(place.real_base)
    found = list(_listed(place, under))
    recorded = _recorded_md5s(place, {info.path: info for info in found})
    return [
        info if info.md5 is not None or info.path not in recorded
        else FileInfo(info.path, info.size, info.mtime, recorded[info.path])
        for info in found
    ]  # fmt: skip


def _listed(place: Place, under: str) -> Iterator[FileInfo]:
    if place.real_base is not None:
        yield from _walk_disk(place.real_base, under)
    elif (bucket := s3_parts(place.storage)) is not None:
        yield from _list_s3(place, *bucket, under)
    else:
        yield from _walk_storage(place, under)


def _walk_disk(root: str, under: str) -> Iterator[FileInfo]:
    """Regular files under root/under; links are neither followed nor listed."""
    start = os.path.join(root, under) if under else root
    if os.path.realpath(start) != start:
        return  # the folder asked for is a link
    stack = [under]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, folder)))
        except OSError:
            continue
        for entry in entries:
            rel = f"{folder}/{entry.name}" if folder else entry.name
            if PARTIAL_MARK in entry.name or not is_plain_path(rel):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                yield FileInfo(rel, info.st_size, info.st_mtime_ns / 1e9, None)


def remove_partials(root: str) -> None:
    """Remove the half-written files under root (no link followed)."""
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not os.path.islink(os.path.join(folder, name))]
        for name in files:
            if PARTIAL_MARK in name:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def _walk_storage(place: Place, folder: str) -> Iterator[FileInfo]:
    """Any other storage, through its public API."""
    try:
        folders, files = place.storage.listdir(place.name(folder))
    except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
        return
    for name in files:
        rel = posixpath.join(folder, name) if folder else name
        if PARTIAL_MARK in name or not is_plain_path(rel):
            continue
        storage_name = place.name(rel)
        try:
            mtime = place.storage.get_modified_time(storage_name).timestamp()
        except (OSError, NotImplementedError, AttributeError):
            mtime = None
        yield FileInfo(rel, place.storage.size(storage_name), mtime, None)
    for name in folders:
        yield from _walk_storage(place, posixpath.join(folder, name) if folder else name)


def s3_parts(storage: Any) -> tuple[Any, str, str] | None:
    """(boto3 client, bucket, location) of a django-storages S3 storage, else None."""
    bucket = getattr(storage, "bucket_name", None)
    connection = getattr(storage, "connection", None)
    if not bucket or connection is None or not hasattr(storage, "location"):
        return None
    return connection.meta.client, bucket, str(storage.location or "")


def s3_key(location: str, name: str) -> str:
    return f"{location.strip('/')}/{name}" if location.strip("/") else name


def _list_s3(
    place: Place, client: Any, bucket: str, location: str, under: str
) -> Iterator[FileInfo]:
    base = s3_key(location, place.base).rstrip("/") + "/"
    search = base + (under + "/" if under else "")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=search):
        for item in page.get("Contents", ()):
            rel = item["Key"][len(base) :]
            if not rel or rel.endswith("/") or PARTIAL_MARK in rel or not is_plain_path(rel):
                continue
            etag = item.get("ETag", "").strip('"')
            md5 = etag if etag and "-" not in etag else None
            yield FileInfo(rel, item["Size"], item["LastModified"].timestamp(), md5)


def _recorded_md5s(place: Place, found: dict[str, FileInfo]) -> dict[str, str]:
    """{path: MD5} from the dataset's Setup and Upload records, for files not changed
    since the record was written."""
    recorded: dict[str, str] = {}
    for record in (SETUP_CHECKSUMS, UPLOAD_CHECKSUMS):  # Upload's last: it is newer
        info = found.get(record_path(record))
        if info is None or info.size > 64 * 1024 * 1024:
            continue
        try:
            with place.storage.open(place.name(info.path), "rb") as handle:
                values = json.loads(handle.read())
        except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
            continue
        if not isinstance(values, dict):
            continue
        for path, md5 in values.items():
            known = found.get(path)
            if (
                known is not None and isinstance(md5, str) and len(md5) == 32
                and (known.mtime is None or info.mtime is None or known.mtime <= info.mtime)
            ):  # fmt: skip
                recorded[path] = md5
    return recorded
