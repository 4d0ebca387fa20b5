"""S3 through django-storages' S3Storage and one boto3 transfer manager, so files move
at boto3 speed.

Imported only for an S3 storage: boto3 costs most of a second to load.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import IO, TYPE_CHECKING, Any, cast

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.exceptions import (
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster
from storages.utils import clean_name, safe_join

from crunchclient.exceptions import UnsafePathError
from crunchclient.transfer.backends.base import Entry, StorageBackend, keep_mtime
from crunchclient.transfer.hashing import md5_file, md5_stream, multipart_etag

if TYPE_CHECKING:
    from django.core.files.storage import Storage

    from crunchclient.transfer.progress import Progress

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024  # bytes: below it an upload's ETag is its MD5
PART_SIZE = 16 * 1024 * 1024  # bytes per ranged GET or uploaded part
MIN_CONCURRENCY = 10  # requests in flight, boto3's default
GET_ATTEMPTS = 5  # tries of a single-GET download whose stream breaks
BROKEN_STREAM = (BotoConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError)


class S3Backend(StorageBackend):
    """One paginated listing for sizes and ETags (S3's MD5s), single GETs for small
    files, the transfer manager's ranged GETs and multipart uploads for large ones."""

    lists_md5 = True

    def __init__(
        self,
        storage: Storage,
        jobs: int,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        super().__init__(storage, jobs)
        s3: Any = storage  # django-storages has no type information
        self.client = s3.connection.meta.client
        self.bucket: str = s3.bucket_name
        self.location: str = s3.location
        self.write_parameters = s3._get_write_parameters  # no public equivalent
        self.config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=max(MIN_CONCURRENCY, jobs),
            max_io_queue=64,
            use_threads=True,
        )
        # Ranges held in memory to be written in order: bounds the client's memory.
        self.config.max_in_memory_download_chunks = 64
        self.manager = create_transfer_manager(self.client, self.config)
        self.listing: dict[str, Entry] | None = None

    def close(self) -> None:
        self.manager.shutdown()

    def prepare(self, prefix: str) -> None:
        # One paginated listing gives every size and ETag: no HEAD per file.
        self.listing = {entry.rel: entry for entry in self.list(prefix)}

    def stored(self, name: str, rel: str) -> Entry | None:
        if self.listing is None:
            raise RuntimeError("prepare() the S3 backend before asking what is stored")
        return self.listing.get(rel)

    def stored_md5(self, name: str, entry: Entry) -> str | None:
        if entry.md5 is not None:
            return entry.md5
        # A multipart ETag is no MD5; objects uploaded by earlier versions carry the MD5
        # in their metadata.
        head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        md5: str | None = head.get("Metadata", {}).get("md5")
        return md5

    def matches(self, name: str, stored: Entry, local: str, md5: str) -> bool:
        if stored.md5 is not None or stored.etag is None:
            return stored.md5 == md5
        if self.stored_md5(name, stored) == md5:
            return True
        # A multipart object is known by the MD5 of its parts' MD5s: split the local
        # file as the upload would have and compare.
        return multipart_etag(local, self._part_size(stored.size or 0)) == stored.etag

    def _part_size(self, size: int) -> int:
        return int(ChunksizeAdjuster().adjust_chunksize(self.config.multipart_chunksize, size))

    def key(self, name: str) -> str:
        """The object key of a storage name, under the storage's location."""
        try:
            return str(safe_join(self.location, clean_name(name)))
        except ValueError:
            raise UnsafePathError(
                f"Refusing storage name {name!r}: it escapes the storage's location "
                f"{self.location!r}; check the dataset's prefix."
            ) from None

    def list(self, prefix: str, *, tidy: bool = False) -> list[Entry]:
        base = self.key(prefix.strip("/")).rstrip("/")
        search = f"{base}/" if base else ""
        entries: list[Entry] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=search):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/"):
                    continue  # a folder marker made by a console, not a file
                etag = item.get("ETag", "").strip('"')
                entries.append(
                    Entry(
                        rel=key[len(search) :],
                        size=item["Size"],
                        mtime_ns=int(item["LastModified"].timestamp()) * 1_000_000_000,
                        md5=etag if etag and "-" not in etag else None,
                        etag=etag or None,
                    )
                )
        return entries

    def download(self, name: str, entry: Entry, partial: str, progress: Progress) -> str | None:
        if entry.size is not None and entry.size < self.config.multipart_threshold:
            # One GET, streamed and hashed in this worker thread: many files then hash
            # on every core instead of queueing behind the transfer manager's single
            # writer thread.
            md5 = self._get(name, partial, progress)
        else:
            with open(partial, "xb") as target:
                writer = _HashingWriter(target, progress)
                # s3transfer writes to any object with write() and seekable(); its types
                # name only files.
                fileobj = cast("IO[bytes]", writer)
                self.manager.download(self.bucket, self.key(name), fileobj).result()
            md5 = writer.digest.hexdigest()
        keep_mtime(partial, entry)
        return md5

    def _get(self, name: str, partial: str, progress: Progress) -> str:
        """Stream one object into the new file partial; retry a broken stream from the start."""
        for attempt in range(GET_ATTEMPTS):
            counted = _Counted(progress)
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
                with contextlib.closing(body), open(partial, "wb" if attempt else "xb") as target:
                    return md5_stream(body, target, counted)[1]
            except BROKEN_STREAM:
                if attempt + 1 == GET_ATTEMPTS:
                    raise
                progress.advance(bytes=-counted.bytes)
                logger.warning("Retrying the download of %r after a broken stream", name)
        raise AssertionError("unreachable")

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        # No MD5 is needed up front (a single-part ETag is the MD5, a multipart one the
        # MD5 of the parts', which matches() recomputes), so the file is hashed here
        # while the transfer manager uploads it, not in a pass before the upload.
        params = dict(self.write_parameters(name))
        future = self.manager.upload(
            str(local), self.bucket, self.key(name), extra_args=params,
            subscribers=[_Subscriber(progress)],
        )  # fmt: skip
        try:
            md5 = md5 or md5_file(local)
        except BaseException:
            future.cancel()
            with contextlib.suppress(Exception):
                future.result()
            raise
        future.result()
        return md5


class _Subscriber(BaseSubscriber):
    """Counts the bytes the transfer manager sends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.progress.advance(bytes=bytes_transferred)


class _Counted:
    """Pass progress on and remember how much was counted, to take it back on a retry."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bytes = 0

    def advance(self, *, bytes: int = 0, files: int = 0) -> None:
        self.progress.advance(bytes=bytes, files=files)
        self.bytes += bytes


class _HashingWriter:
    """A write-only, non-seekable file for boto3: it hashes the bytes as they arrive.

    Non-seekable makes s3transfer deliver the ranges in order, so the MD5 is computed
    while the object streams instead of in a second pass over the file.
    """

    def __init__(self, target: IO[bytes], progress: Progress) -> None:
        self.target = target
        self.progress = progress
        self.digest = hashlib.md5(usedforsecurity=False)

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.target.write(data)
        self.progress.advance(bytes=len(data))
        return len(data)
