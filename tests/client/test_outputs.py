"""The workflow's files are hashed while it runs, and Upload trusts only unchanged ones."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crunchclient.transfer import upload_tree
from crunchclient.transfer.hashing import fingerprint
from crunchclient.worker.stages.setup import is_record
from crunchclient.worker.workflow.outputs import OutputHashes
from tests.client.test_transfer import PREFIX, md5sum, stored_names

SETTLE = 0.05  # seconds: short, so the tests do not wait on the real one-second pause


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[[], OutputHashes]]:
    """Start an OutputHashes on tmp_path/work; stop it after the test."""
    work = tmp_path / "work"
    work.mkdir()
    started: list[OutputHashes] = []

    def start() -> OutputHashes:
        outputs = OutputHashes(work, inputs={"input.txt"}, exclude=is_record, settle=SETTLE)
        started.append(outputs.start())
        return started[-1]

    yield start
    for outputs in started:
        outputs.stop()


def wait_for(outputs: OutputHashes, *rels: str, timeout: float = 10.0) -> dict[str, str]:
    """Wait until every rel is hashed as it now is; return {rel: md5}."""
    root = Path(outputs.root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        digests = outputs.digests()
        current = {
            rel: digests[rel][1]
            for rel in rels
            if rel in digests and digests[rel][0] == fingerprint(str(root / rel))
        }
        if len(current) == len(rels):
            return current
        time.sleep(SETTLE)
    raise AssertionError(f"not hashed in {timeout}s: {set(rels) - set(outputs.digests())}")


def test_new_files_are_hashed_once_settled(tmp_path: Path, watch: Any) -> None:
    work = tmp_path / "work"
    (work / "input.txt").write_bytes(b"downloaded before the workflow")
    outputs = watch()
    (work / "out").mkdir()
    (work / "out/result.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    (work / "out/small.txt").write_bytes(b"small")

    hashed = wait_for(outputs, "out/result.bin", "out/small.txt")

    assert hashed == {rel: md5 for rel, md5 in md5sum(work).items() if rel.startswith("out/")}
    time.sleep(5 * SETTLE)
    assert "input.txt" not in outputs.digests()


def test_a_file_rewritten_after_hashing_is_hashed_again(tmp_path: Path, watch: Any) -> None:
    work = tmp_path / "work"
    outputs = watch()
    (work / "result.txt").write_bytes(b"first version")
    first = wait_for(outputs, "result.txt")
    with open(work / "result.txt", "r+b") as out:  # same size, same inode
        out.write(b"FIRST")

    second = wait_for(outputs, "result.txt")

    assert first != second == {"result.txt": md5sum(work)["result.txt"]}


def test_records_caches_and_links_out_are_not_hashed(tmp_path: Path, watch: Any) -> None:
    work = tmp_path / "work"
    outside = tmp_path / "reference.fa"
    outside.write_bytes(b">chr1\nACGT\n")
    outputs = watch()
    for rel in (".crunch/workflow.log", ".snakemake/metadata/x", "kept.txt"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(b"data")
    (work / "reference.fa").symlink_to(outside)

    wait_for(outputs, "kept.txt")
    time.sleep(5 * SETTLE)

    assert sorted(outputs.digests()) == ["kept.txt"]


def test_stop_ends_a_long_hash_at_once(tmp_path: Path, watch: Any) -> None:
    work = tmp_path / "work"
    outputs = watch()
    with open(work / "huge.bin", "wb") as out:
        out.truncate(8 * 1024**3)  # sparse: hashing it would take seconds
    time.sleep(10 * SETTLE)  # settled, and its hashing under way

    started = time.monotonic()
    outputs.stop()

    assert time.monotonic() - started < 1.0
    assert "huge.bin" not in outputs.digests()


def test_upload_copies_files_hashed_meanwhile_without_reading_them(
    storage: Any, tmp_path: Path
) -> None:
    """A digest is used while the file is as it was hashed, and never after it changed."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "unchanged.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (work / "changed.txt").write_bytes(b"as hashed")
    (work / "not-hashed.txt").write_bytes(b"written at the very end")
    # Digests the file's bytes do not have: only a file taken as it is could carry them.
    hashed = {
        "unchanged.bin": (fingerprint(str(work / "unchanged.bin")), "0" * 32),
        "changed.txt": (fingerprint(str(work / "changed.txt")), "1" * 32),
    }
    time.sleep(0.05)  # past the filesystem clock's tick
    (work / "changed.txt").write_bytes(b"as uploaded")

    checksums, result = upload_tree(storage, PREFIX, work, hashed=hashed, quiet=True)

    real = md5sum(work)
    assert checksums == {**real, "unchanged.bin": "0" * 32}
    assert result.files == 3
    assert stored_names(storage) == sorted(real)
    assert storage.open(f"{PREFIX}/unchanged.bin").read() == (work / "unchanged.bin").read_bytes()


def test_one_thread_watches_dataset_after_dataset(tmp_path: Path) -> None:
    watching = []  # the threads alive while each dataset is watched (objects, not names)
    for number in range(3):
        work = tmp_path / f"d{number}"
        work.mkdir()
        outputs = OutputHashes(work, exclude=is_record, settle=SETTLE).start()
        (work / "result.txt").write_text(f"dataset {number}")
        wait_for(outputs, "result.txt")
        watching.append({t for t in threading.enumerate() if t.name.startswith("crunch-outputs")})
        outputs.stop()

    assert watching[0] and watching[0] == watching[1] == watching[2]  # none more per dataset
