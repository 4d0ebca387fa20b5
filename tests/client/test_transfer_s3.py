"""S3 specifics: multipart objects, the storage's location, boto3 managed transfers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crunchclient.transfer import backend_class, download_tree, upload_files, upload_tree
from crunchclient.transfer.backends.s3 import S3Backend
from crunchclient.transfer.hashing import multipart_etag
from tests.s3 import make_s3_storage

PREFIX = "proj/ds"


def md5sum(path: Path) -> str:
    result = subprocess.run(["md5sum", str(path)], capture_output=True, text=True, check=True)
    return result.stdout[:32]


def test_multipart_object_resumes_through_its_etag(s3_storage: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))
    small_parts = {"multipart_threshold": 5 * 1024 * 1024, "part_size": 5 * 1024 * 1024}

    with S3Backend(s3_storage, 8, **small_parts) as backend:
        first = upload_files(backend, PREFIX, work, ["big.bin"], quiet=True)
    head = s3_storage.connection.meta.client.head_object(
        Bucket=s3_storage.bucket_name, Key=f"{PREFIX}/big.bin"
    )
    with S3Backend(s3_storage, 8, **small_parts) as backend:
        second = upload_files(backend, PREFIX, work, ["big.bin"], quiet=True)

    assert head["ETag"].strip('"').endswith("-3")  # multipart: the ETag is no MD5
    etag = multipart_etag(work / "big.bin", 5 * 1024 * 1024)
    assert head["ETag"].strip('"') == etag
    assert (first.files, second.files, second.skipped) == (1, 0, 1)
    again = download_tree(s3_storage, PREFIX, tmp_path / "again", quiet=True)
    assert again == {"big.bin": md5sum(work / "big.bin")}


def test_multipart_object_with_md5_metadata_resumes(
    s3_storage: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An object uploaded in other parts (another tool, older crunch) is known by its metadata."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))
    client = s3_storage.connection.meta.client
    from boto3.s3.transfer import TransferConfig

    other_parts = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=6 * 1024 * 1024
    )
    client.upload_file(
        str(work / "big.bin"), s3_storage.bucket_name, f"{PREFIX}/big.bin",
        ExtraArgs={"Metadata": {"md5": md5sum(work / "big.bin")}},
        Config=other_parts,
    )  # fmt: skip
    (work / "other.bin").write_bytes(os.urandom(11 * 1024 * 1024))
    client.upload_file(
        str(work / "other.bin"), s3_storage.bucket_name, f"{PREFIX}/other.bin",
        Config=other_parts,
    )  # fmt: skip

    result = upload_files(s3_storage, PREFIX, work, ["big.bin", "other.bin"], quiet=True)

    # Without metadata and in parts of another size, other.bin cannot be recognised.
    assert (result.files, result.skipped) == (1, 1)


def test_storage_location_is_honoured(moto_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    storage = make_s3_storage(moto_endpoint, location="media")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub/x.txt").write_bytes(b"x")

    checksums, result = upload_tree(storage, PREFIX, work, quiet=True)

    keys = [
        o["Key"]
        for o in storage.connection.meta.client.list_objects_v2(Bucket=storage.bucket_name)[
            "Contents"
        ]
    ]
    assert keys == [f"media/{PREFIX}/sub/x.txt"]
    assert download_tree(storage, PREFIX, tmp_path / "down", quiet=True) == checksums


def test_upload_tree_sends_only_what_changed(s3_storage: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for i in range(5):
        (work / f"f{i}.txt").write_bytes(f"file {i}".encode())
    upload_tree(s3_storage, PREFIX, work, quiet=True)
    setup = download_tree(s3_storage, PREFIX, tmp_path / "node", quiet=True)
    node = tmp_path / "node"
    (node / "f1.txt").write_bytes(b"changed")
    (node / "new.txt").write_bytes(b"new")

    checksums, result = upload_tree(s3_storage, PREFIX, node, known=setup, quiet=True)

    assert (result.files, result.skipped) == (2, 4)
    assert checksums["f1.txt"] == md5sum(node / "f1.txt")
    assert checksums["new.txt"] == md5sum(node / "new.txt")
    assert download_tree(s3_storage, PREFIX, tmp_path / "check", quiet=True) == checksums


@pytest.mark.parametrize("jobs", [1, 8])
def test_many_small_files_in_parallel(s3_storage: Any, tmp_path: Path, jobs: int) -> None:
    work = tmp_path / "work"
    for i in range(60):
        folder = work / f"d{i % 4}" / f"e{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.dat").write_bytes(os.urandom(100 + i))
    checksums, result = upload_tree(s3_storage, PREFIX, work, jobs=jobs, quiet=True)
    assert result.files == 60

    assert download_tree(s3_storage, PREFIX, tmp_path / "down", jobs=jobs, quiet=True) == checksums


def test_s3_storage_gets_the_s3_backend(s3_storage: Any) -> None:
    assert backend_class(s3_storage) is S3Backend
