"""Transfers on local storage and on S3 (moto's server): the same promises on both."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from crunchclient import transfer
from crunchclient.exceptions import Interrupted, TransferError, UnsafePathError
from crunchclient.transfer import (
    checksum_tree,
    download_tree,
    fetch_tree,
    hashing,
    safe_relative,
    upload_files,
    upload_tree,
)
from crunchclient.transfer.hashing import Checksums
from crunchclient.transfer.progress import Progress

PREFIX = "proj/ds"
FILES = {
    "a.txt": b"alpha\n",
    "empty.dat": b"",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.csv": b"x,y\n1,2\n" * 100,
    "big.bin": os.urandom(3 * 1024 * 1024 + 17),
}


def put(storage: Any, files: dict[str, bytes], prefix: str = PREFIX) -> None:
    for rel, data in files.items():
        assert storage.save(f"{prefix}/{rel}", ContentFile(data)) == f"{prefix}/{rel}"


def stored_names(storage: Any, prefix: str = PREFIX) -> list[str]:
    names: list[str] = []
    stack = [prefix]
    while stack:
        current = stack.pop()
        dirs, files = storage.listdir(current)
        stack += [f"{current}/{d}" for d in dirs]
        names += [f"{current}/{f}"[len(prefix) + 1 :] for f in files]
    return sorted(names)


def md5sum(directory: Path) -> dict[str, str]:
    """Checksums from the real md5sum command."""
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    out = subprocess.run(
        ["md5sum", *files], cwd=directory, capture_output=True, text=True, check=True
    ).stdout
    return {line[34:]: line[:32] for line in out.splitlines()}


def inodes(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): p.stat().st_ino for p in directory.rglob("*") if p.is_file()
    }


def test_download_checksums_equal_md5sum(storage: Any, tmp_path: Path) -> None:
    put(storage, FILES)
    work = tmp_path / "work"

    checksums = download_tree(storage, PREFIX, work, jobs=3, quiet=True)

    assert sorted(checksums) == sorted(FILES)
    assert checksums == md5sum(work)
    for rel, data in FILES.items():
        assert (work / rel).read_bytes() == data


def test_second_download_moves_nothing(storage: Any, tmp_path: Path, monkeypatch: Any) -> None:
    put(storage, FILES)
    work = tmp_path / "work"
    first = download_tree(storage, PREFIX, work, quiet=True)
    before = inodes(work)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(transfer.backend_class(storage), "download", refuse)
    second = download_tree(storage, PREFIX, work, known=first, quiet=True)

    assert second == first
    assert inodes(work) == before


def test_download_resumes_only_missing_and_changed(storage: Any, tmp_path: Path) -> None:
    put(storage, FILES)
    work = tmp_path / "work"
    first = download_tree(storage, PREFIX, work, quiet=True)
    (work / "a.txt").unlink()
    (work / "sub/b.bin").write_bytes(b"corrupted")
    before = inodes(work)

    second = download_tree(storage, PREFIX, work, known=first, quiet=True)

    assert second == first == md5sum(work)
    after = inodes(work)
    assert after["sub/b.bin"] != before["sub/b.bin"]
    assert after["big.bin"] == before["big.bin"]


def test_download_without_record_keeps_complete_files(storage: Any, tmp_path: Path) -> None:
    """A run killed before it wrote its record: the next one moves only what is missing."""
    put(storage, FILES)
    work = tmp_path / "work"
    download_tree(storage, PREFIX, work, quiet=True)
    (work / "a.txt").unlink()
    before = inodes(work)

    checksums = download_tree(storage, PREFIX, work, quiet=True)  # no known checksums

    assert checksums == md5sum(work)
    after = inodes(work)
    assert {rel: after[rel] for rel in before} == before
    assert (work / "a.txt").read_bytes() == FILES["a.txt"]


@pytest.fixture
def held_hashing(monkeypatch: Any) -> threading.Event:
    """Background hashing waits until the event is set: a workflow gets there first."""
    go = threading.Event()
    lowest = hashing.lowest_priority

    def wait_then_lower() -> None:
        go.wait(30)
        lowest()

    monkeypatch.setattr(hashing, "lowest_priority", wait_then_lower)
    return go


def fetch_local(tmp_path: Path) -> tuple[FileSystemStorage, Path, Checksums]:
    """FILES fetched from local storage into tmp_path/work; (storage, work, checksums)."""
    storage = FileSystemStorage(location=tmp_path / "media")
    put(storage, FILES)
    work = tmp_path / "work"
    return storage, work, fetch_tree(storage, PREFIX, work, quiet=True)


def test_files_are_ready_before_their_checksums(tmp_path: Path, held_hashing: Any) -> None:
    _storage, work, checksums = fetch_local(tmp_path)

    assert not checksums.done()  # big.bin is not hashed yet, and its copy is complete
    assert (work / "big.bin").read_bytes() == FILES["big.bin"]
    held_hashing.set()
    assert checksums.result() == md5sum(work)


def test_a_file_changed_before_it_is_hashed_is_recorded_as_downloaded(
    tmp_path: Path, held_hashing: Any
) -> None:
    _storage, work, checksums = fetch_local(tmp_path)

    with open(work / "big.bin", "ab") as big:
        big.write(b"written by the workflow")
    held_hashing.set()

    recorded = checksums.result()
    assert recorded == md5sum(tmp_path / "media" / PREFIX)
    assert recorded["big.bin"] != md5sum(work)["big.bin"]


def test_a_changed_file_gone_from_storage_is_a_clear_error(
    tmp_path: Path, held_hashing: Any
) -> None:
    storage, work, checksums = fetch_local(tmp_path)
    (work / "big.bin").write_bytes(b"rewritten")
    storage.delete(f"{PREFIX}/big.bin")
    held_hashing.set()

    with pytest.raises(
        TransferError, match=r"Cannot record the checksum of 'big\.bin': the workflow"
    ):
        checksums.result()


def test_stopped_checksums_end_the_wait(tmp_path: Path, held_hashing: Any) -> None:
    _storage, _work, checksums = fetch_local(tmp_path)

    checksums.stop()
    held_hashing.set()

    with pytest.raises(Interrupted):
        checksums.result()


def test_awaited_checksums_are_finished_at_normal_priority(
    tmp_path: Path, held_hashing: Any
) -> None:
    """The background threads get no CPU (a busy node): once Upload waits, threads
    started by the waiting one hash what is left."""
    _storage, work, checksums = fetch_local(tmp_path)
    assert checksums.pending == {"big.bin"}

    assert checksums.result() == md5sum(work)  # held_hashing is never set
    assert "big.bin" not in checksums.known


def test_upload_leaves_pending_files_as_downloaded_unread(
    tmp_path: Path, held_hashing: Any, monkeypatch: Any
) -> None:
    """Upload need not wait for Setup's MD5s: a file still as downloaded is left alone
    and named deferred; a changed one is sent with its own MD5."""
    storage, work, checksums = fetch_local(tmp_path)
    (work / "a.txt").write_bytes(b"changed by the workflow\n")
    (work / "out.bin").write_bytes(b"written by the workflow")
    read: list[str] = []
    real_md5 = hashing.md5_file
    monkeypatch.setattr(
        transfer.upload, "md5_file", lambda path, *a: read.append(str(path)) or real_md5(path, *a)
    )

    after, result = upload_tree(
        storage, PREFIX, work, known=checksums.known, pending=checksums.pending, quiet=True
    )

    assert result.deferred == ("big.bin",)
    assert not checksums.done()  # nothing waited for them
    assert not any(path.endswith("big.bin") for path in read)
    expected = md5sum(work)
    assert after == {rel: md5 for rel, md5 in expected.items() if rel != "big.bin"}
    assert storage.open(f"{PREFIX}/a.txt").read() == b"changed by the workflow\n"
    assert checksums.result()["big.bin"] == expected["big.bin"]


def test_upload_waits_for_the_stored_md5_of_a_file_the_workflow_changed(
    tmp_path: Path, held_hashing: Any
) -> None:
    """Its Setup MD5 is read from the stored file, which the upload then replaces."""
    storage, work, checksums = fetch_local(tmp_path)
    with open(work / "big.bin", "ab") as big:
        big.write(b"appended by the workflow")

    setup, after, _result = transfer.upload.upload_after_setup(
        storage, PREFIX, work, checksums, quiet=True
    )

    assert setup["big.bin"] == hashlib.md5(FILES["big.bin"]).hexdigest()
    assert after["big.bin"] == md5sum(work)["big.bin"] != setup["big.bin"]
    assert (
        storage.open(f"{PREFIX}/big.bin").read() == FILES["big.bin"] + b"appended by the workflow"
    )


def disk_full_after_first_bytes(monkeypatch: Any) -> None:
    """Make the transfer fail as a full disk would, once its first bytes have moved."""
    real_advance = Progress.advance

    def interrupt(self: Progress, *, bytes: int = 0, files: int = 0) -> None:
        real_advance(self, bytes=bytes, files=files)
        if bytes:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(Progress, "advance", interrupt)


def test_interrupted_download_leaves_no_partial_file(
    storage: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    put(storage, {"big.bin": os.urandom(12 * 1024 * 1024)})
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(b"previous version")
    disk_full_after_first_bytes(monkeypatch)

    with pytest.raises(TransferError, match="No space left on device"):
        download_tree(storage, PREFIX, work, jobs=2, quiet=True)

    assert sorted(os.listdir(work)) == ["big.bin"]
    assert (work / "big.bin").read_bytes() == b"previous version"


def test_upload_replaces_modified_file_in_place(storage: Any, tmp_path: Path) -> None:
    put(storage, FILES)
    work = tmp_path / "work"
    download_tree(storage, PREFIX, work, quiet=True)
    (work / "sub/b.bin").write_bytes(b"new content")
    (work / "new/result.txt").parent.mkdir()
    (work / "new/result.txt").write_bytes(b"result")

    result = upload_files(storage, PREFIX, work, sorted(md5sum(work)), jobs=2, quiet=True)

    assert (result.files, result.bytes, result.skipped) == (2, 17, len(FILES) - 1)
    assert stored_names(storage) == sorted([*FILES, "new/result.txt"])
    with storage.open(f"{PREFIX}/sub/b.bin", "rb") as stored:
        assert stored.read() == b"new content"


def test_second_upload_moves_nothing(storage: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    for rel, data in FILES.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    checksums = checksum_tree(work)
    assert checksums == md5sum(work)

    first = upload_files(storage, PREFIX, work, checksums, quiet=True, checksums=checksums)
    second = upload_files(storage, PREFIX, work, checksums, quiet=True)

    assert (first.files, first.skipped) == (len(FILES), 0)
    assert first.bytes == sum(len(d) for d in FILES.values())
    assert (second.files, second.bytes, second.skipped) == (0, 0, len(FILES))
    assert download_tree(storage, PREFIX, tmp_path / "again", quiet=True) == checksums


def test_symlink_out_of_folder_not_uploaded(storage: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    work = tmp_path / "work"
    (work / "inner").mkdir(parents=True)
    (work / "data.txt").write_bytes(b"data")
    (work / "leak.txt").symlink_to(outside / "secret.txt")
    (work / "leakdir").symlink_to(outside)
    (work / "inner/alias.txt").symlink_to(work / "data.txt")

    checksums = checksum_tree(work)
    assert sorted(checksums) == ["data.txt", "inner/alias.txt"]

    result = upload_files(
        storage, PREFIX, work, ["data.txt", "leak.txt", "leakdir/secret.txt"], quiet=True
    )

    assert (result.files, result.skipped) == (1, 2)
    assert stored_names(storage) == ["data.txt"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "../evil.txt",
            "Refusing path '../evil.txt' from storage: it escapes the dataset folder; "
            "remove or rename it in storage.",
        ),
        (
            "a/../../evil.txt",
            "Refusing path 'a/../../evil.txt' from storage: it escapes the dataset folder; "
            "remove or rename it in storage.",
        ),
        (
            "/etc/passwd",
            "Refusing absolute path '/etc/passwd' from storage: remove or rename it in storage.",
        ),
    ],
)
def test_safe_relative_refuses_escapes(name: str, message: str) -> None:
    with pytest.raises(UnsafePathError) as excinfo:
        safe_relative(name)
    assert str(excinfo.value) == message
    assert excinfo.value.exit_code == 6


def test_safe_relative_cleans() -> None:
    assert safe_relative("./a//b/./c.txt") == "a/b/c.txt"


class ListingStorage(FileSystemStorage):
    """Local storage without path(), whose listing also holds a hostile name."""

    hostile = "../../escape.txt"

    def path(self, name: str) -> str:
        raise NotImplementedError

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        folder = os.path.join(self.location, path)
        names = os.listdir(folder)
        directories = [n for n in names if os.path.isdir(os.path.join(folder, n))]
        files = [n for n in names if n not in directories]
        return directories, [*files, self.hostile]

    def _open(self, name: str, mode: str = "rb") -> Any:
        from django.core.files import File

        return File(open(os.path.join(self.location, name), mode))


def test_hostile_name_refused_before_any_file_moves(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / PREFIX).mkdir(parents=True)
    (root / PREFIX / "a.txt").write_bytes(b"a")
    work = tmp_path / "sub" / "work"

    with pytest.raises(UnsafePathError, match=r"Refusing path '\.\./\.\./escape\.txt'"):
        download_tree(ListingStorage(location=root), PREFIX, work, quiet=True)

    assert not (tmp_path / "escape.txt").exists()
    assert not (work / "a.txt").exists()


def test_s3_key_escaping_refused(s3_storage: Any, tmp_path: Path) -> None:
    client = s3_storage.connection.meta.client
    client.put_object(Bucket=s3_storage.bucket_name, Key=f"{PREFIX}/ok.txt", Body=b"ok")
    client.put_object(Bucket=s3_storage.bucket_name, Key=f"{PREFIX}/../../x.txt", Body=b"x")
    client.put_object(Bucket=s3_storage.bucket_name, Key=f"{PREFIX}//abs.txt", Body=b"x")

    with pytest.raises(UnsafePathError, match="Refusing"):
        download_tree(s3_storage, PREFIX, tmp_path / "work", quiet=True)

    assert not (tmp_path / "work" / "ok.txt").exists()


def test_link_in_destination_pointing_outside_refused(storage: Any, tmp_path: Path) -> None:
    put(storage, {"data/x.txt": b"x"})
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(outside)

    with pytest.raises(UnsafePathError) as excinfo:
        download_tree(storage, PREFIX, work, quiet=True)

    assert str(excinfo.value) == (
        f"Refusing to write into 'data': it links outside {str(work)!r}; remove the link."
    )
    assert os.listdir(outside) == []


def test_killed_download_leaves_no_file_under_final_name(tmp_path: Path) -> None:
    """SIGKILL in the middle of a copy: the final name never holds a partial file."""
    root = tmp_path / "media"
    (root / PREFIX).mkdir(parents=True)
    (root / PREFIX / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    work = tmp_path / "work"
    script = textwrap.dedent(
        f"""
        import os, signal, time, django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
        django.setup()
        from pathlib import Path
        from django.core.files.storage import FileSystemStorage
        from crunchclient import transfer
        from crunchclient.transfer.progress import Progress
        def die(self, *, bytes=0, files=0):
            # Die once bytes flow and the partial file exists, mid-copy.
            for _ in range(200):
                if bytes and os.listdir({str(work)!r}):
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.01)
        Progress.advance = die
        transfer.download_tree(
            FileSystemStorage(location={str(root)!r}), {PREFIX!r}, Path({str(work)!r}), quiet=True
        )
        """
    )
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], env={**os.environ}
    )

    assert process.returncode == -9
    names = os.listdir(work)
    assert "big.bin" not in names
    assert len(names) == 1 and ".crunch-partial-" in names[0]
    assert checksum_tree(work) == {}  # the leftover is never taken for a result
    # The next run clears the leftover and downloads the file.
    checksums = download_tree(FileSystemStorage(location=root), PREFIX, work, quiet=True)
    assert checksums == md5sum(work)
    assert os.listdir(work) == ["big.bin"]


def test_progress_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("download", total_bytes=2048, total_files=2, stream=stream, interval=0) as p:
        p.advance(bytes=1024, files=1)
        p.advance(bytes=1024, files=1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("download: 1.0 KiB/2.0 KiB (50%), 1/2 files, ")
    assert lines[-1].startswith("download: 2.0 KiB/2.0 KiB (100%), 2/2 files, ")


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Progress("upload", total_bytes=2048, total_files=2, stream=stream) as p:
        p.advance(bytes=2048, files=2)
    assert "upload" in stream.getvalue()
    assert "2/2 files" in stream.getvalue()


def test_quiet_prints_nothing(tmp_path: Path, capsys: Any) -> None:
    storage = FileSystemStorage(location=tmp_path / "media")
    put(storage, FILES)
    download_tree(storage, PREFIX, tmp_path / "work", quiet=True)
    assert capsys.readouterr().err == ""
    # Not quiet, but a short transfer off a terminal: its one line would only repeat the
    # caller's (a run's Setup line); see test_progress_plain_lines_when_not_a_terminal.
    download_tree(storage, PREFIX, tmp_path / "work2")
    assert capsys.readouterr().err == ""


def test_many_small_files_round_trip(storage: Any, tmp_path: Path) -> None:
    """Hundreds of small files in nested folders: every batch, on one thread or several."""
    many = {f"d{i % 7}/e{i % 3}/f{i}.dat": os.urandom(i % 5000) for i in range(300)}
    work = tmp_path / "work"
    source = _tree(tmp_path / "src", many)
    checksums, result = upload_tree(storage, PREFIX, source, jobs=4, quiet=True)

    assert result.files == len(many)
    assert download_tree(storage, PREFIX, work, jobs=4, quiet=True) == checksums == md5sum(work)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_upload_tree_checksums_and_sends_only_changes(storage: Any, tmp_path: Path) -> None:
    put(storage, FILES)
    work = tmp_path / "work"
    setup = download_tree(storage, PREFIX, work, quiet=True)
    (work / "a.txt").write_bytes(b"modified")
    (work / "out").mkdir()
    (work / "out/new.txt").write_bytes(b"new")
    (work / ".crunch").mkdir()
    (work / ".crunch/log.txt").write_bytes(b"log")

    checksums, result = upload_tree(
        storage,
        PREFIX,
        work,
        known=setup,
        exclude=lambda rel: rel.startswith(".crunch/"),
        quiet=True,
    )

    assert checksums == {k: v for k, v in md5sum(work).items() if not k.startswith(".crunch/")}
    assert (result.files, result.skipped) == (2, len(FILES) - 1)
    assert stored_names(storage) == sorted([*FILES, "out/new.txt"])
    again = upload_tree(storage, PREFIX, work, known=checksums, quiet=True)[1]
    assert again.files == 1  # only .crunch/log.txt, no longer excluded


def test_a_file_nobody_hashed_is_hashed_in_the_pass_that_copies_it(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Local storage: no MD5 pass before or beside the copy; one read, hashed as written."""
    from crunchclient.transfer import copies
    from crunchclient.transfer.backends import local

    data = os.urandom(2 * hashing.CHUNK_SIZE + 12345)  # chunks of both buffers, a short tail
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out/fresh.bin").write_bytes(data)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a second pass over the file")

    for module in (transfer.upload, local, hashing):
        monkeypatch.setattr(module, "md5_file", refuse)
    monkeypatch.setattr(copies, "_copy_kernel", refuse)
    storage = FileSystemStorage(location=tmp_path / "media")

    checksums, result = upload_tree(storage, PREFIX, work, jobs=2, quiet=True)

    assert checksums == {"out/fresh.bin": hashlib.md5(data).hexdigest()}
    assert (result.files, result.bytes, result.hashed_before) == (1, len(data), 0)
    assert Path(storage.path(f"{PREFIX}/out/fresh.bin")).read_bytes() == data
    assert os.listdir(storage.path(f"{PREFIX}/out")) == ["fresh.bin"]  # no partial file


def test_interrupted_single_pass_upload_keeps_the_stored_file(
    tmp_path: Path, monkeypatch: Any
) -> None:
    storage = FileSystemStorage(location=tmp_path / "media")
    put(storage, {"big.bin": b"previous version"})
    work = tmp_path / "work"
    work.mkdir()
    (work / "big.bin").write_bytes(os.urandom(3 * hashing.CHUNK_SIZE))
    disk_full_after_first_bytes(monkeypatch)

    with pytest.raises(TransferError, match="No space left on device"):
        upload_tree(storage, PREFIX, work, jobs=2, quiet=True)

    assert os.listdir(storage.path(PREFIX)) == ["big.bin"]
    assert Path(storage.path(f"{PREFIX}/big.bin")).read_bytes() == b"previous version"


def test_backend_follows_the_storage_class_and_its_bases(tmp_path: Path) -> None:
    from django.core.files.storage import default_storage

    from crunchclient.transfer import GenericBackend, LocalBackend, backend_class

    class Subclassed(FileSystemStorage):
        pass

    assert backend_class(FileSystemStorage(location=tmp_path)) is LocalBackend
    assert backend_class(Subclassed(location=tmp_path)) is LocalBackend
    assert backend_class(default_storage) is LocalBackend  # a LazyObject, seen through
    # A local storage without path() is read through the storage API.
    assert backend_class(ListingStorage(location=tmp_path)) is GenericBackend
