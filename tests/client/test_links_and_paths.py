"""Issue 22 (7, 9, 10): the dataset's folder rule, upload debris, long names, S3 keys
that mean the same file, and a full disk. Real server, real `crunch`, real storage
(local disk, a tmpfs, moto's S3 server)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from crunch.models import Dataset, Project, Status
from crunchclient.exceptions import TransferError
from crunchclient.transfer import download_tree
from tests.clientkit import Crunch, error_line

pytestmark = pytest.mark.django_db(transaction=True)

# What a client killed during an upload leaves, as the versions before this one named it
# and as this one does.
DEBRIS = ("result.txt.crunch-partial-1a2b3c4d", ".crunch-partial-1a2b3c4d-0011223344556677")


def test_upload_debris_is_hidden_by_the_pages_and_cleaned_by_the_next_run(
    crunch: Crunch,
) -> None:
    project = crunch.project("Debris", "echo done > result.txt\n", is_public=True)
    dataset = crunch.dataset(project["slug"], "one", {"in.txt": "x"})
    stored = crunch.media / dataset["base_file_path"]
    for name in DEBRIS:
        (stored / name).write_text("half of a result")
    (stored / "sub").mkdir()
    (stored / "sub" / DEBRIS[1]).write_text("half")
    page = Client().get(reverse("crunch:dataset-detail", kwargs={"slug": dataset["slug"]}))
    assert page.status_code == 200
    assert b"crunch-partial" not in page.content
    for name in DEBRIS:
        url = reverse("crunch:dataset-file", kwargs={"slug": dataset["slug"], "path": name})
        assert Client().get(url).status_code == 404

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    assert not list(stored.rglob("*crunch-partial*"))
    assert crunch.stored(dataset)["result.txt"] == "done\n"


def test_output_names_of_255_bytes_upload(crunch: Crunch) -> None:
    names = ["n" * 255, "é" * 116 + "x" * 3, "m" * 232]  # 255, 235, 232 bytes
    script = "".join(f"echo {i} > {name}\n" for i, name in enumerate(names))
    project = crunch.project("Long", script)
    dataset = crunch.dataset(project["slug"], "one")

    result = crunch.run("run", dataset["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    stored = crunch.stored(dataset)
    assert [stored[name] for name in names] == ["0\n", "1\n", "2\n"]
    assert not list((crunch.media / dataset["base_file_path"]).rglob("*crunch-partial*"))


def test_a_drive_letter_folder_is_refused_by_every_command(crunch: Crunch) -> None:
    """One folder rule for Setup and for `crunch files`/`download`."""
    project = Project.objects.create(name="Drive", slug="drive", workflow="true\n")
    Dataset.objects.create(project=project, name="d", slug="drive:d", base_file_path="C:/Users")
    message = (
        "Refusing the folder 'C:/Users' of dataset 'drive:d': it is not a folder inside the "
        "storage; give the dataset a relative base_file_path on the server."
    )

    listed = crunch.run("files", "drive:d", env=crunch.maintainer_env)
    downloaded = crunch.run("download", "drive:d", env=crunch.maintainer_env)
    ran = crunch.run("run", "drive:d", "--quiet")

    assert (listed.returncode, error_line(listed)) == (6, f"CommandError: {message}")
    assert (downloaded.returncode, error_line(downloaded)) == (6, f"CommandError: {message}")
    assert ran.returncode == 6 and message in error_line(ran)
    assert Status.objects.filter(dataset__slug="drive:d").last().note == message


def test_download_refuses_a_slug_that_climbs_out_of_its_destination(crunch: Crunch) -> None:
    project = Project.objects.create(name="Up", slug="up", workflow="true\n")
    Dataset.objects.create(project=project, name="x", slug="up:x", base_file_path="up/x")
    Dataset.objects.filter(slug="up:x").update(slug="..:x")  # as a hostile server says
    (crunch.media / "up/x").mkdir(parents=True)
    (crunch.media / "up/x/in.txt").write_text("in")
    dest = crunch.work / "dest"

    result = crunch.run(
        "download", "--project", "up", "--dest", str(dest), env=crunch.maintainer_env
    )

    assert result.returncode == 6, result.stderr
    assert error_line(result).startswith("CommandError: Refusing the project slug '..'")
    assert not (crunch.work / "x").exists() and not (crunch.work / "in.txt").exists()


# -------------------------------------------------------------------------- S3 keys


def put_keys(s3_storage: Any, keys: dict[str, bytes]) -> None:
    client = s3_storage.connection.meta.client
    for key, data in keys.items():
        client.put_object(Bucket=s3_storage.bucket_name, Key=key, Body=data)


def test_s3_keys_that_name_the_same_file_are_refused(s3_storage: Any, tmp_path: Path) -> None:
    put_keys(s3_storage, {"p/d/a//b.txt": b"1", "p/d/a/./b.txt": b"2", "p/d/a/b.txt": b"3"})

    with pytest.raises(TransferError) as refused:
        download_tree(s3_storage, "p/d", tmp_path / "work", quiet=True)

    assert str(refused.value) == (
        "Refusing the keys 'p/d/a/./b.txt', 'p/d/a//b.txt', 'p/d/a/b.txt' in storage: they "
        "are all the file 'a/b.txt'; keep one of them."
    )
    assert not (tmp_path / "work" / "a" / "b.txt").exists()


def test_s3_key_that_is_also_a_folder_is_refused(s3_storage: Any, tmp_path: Path) -> None:
    put_keys(s3_storage, {"p/d/sub": b"a file", "p/d/sub/x.txt": b"in the folder"})

    with pytest.raises(TransferError) as refused:
        download_tree(s3_storage, "p/d", tmp_path / "work", quiet=True)

    assert str(refused.value) == (
        "Refusing the key 'p/d/sub' in storage: it is a file and also the folder of "
        "'p/d/sub/x.txt'; rename one of them."
    )


# ------------------------------------------------------------------------ full disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: another filesystem than storage's, so the kernel copy is refused."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_leaves_no_cut_off_file(crunch: Crunch, tiny_disk: Path) -> None:
    project = crunch.project("Full", "md5sum big.bin > sum.txt\n", max_attempts=1)
    dataset = crunch.dataset(project["slug"], "one")
    stored = crunch.media / dataset["base_file_path"]
    stored.mkdir(parents=True)
    data = os.urandom(1536 * 1024)  # 1.5 MiB: copied in one chunk, two thirds of it fit
    (stored / "big.bin").write_bytes(data)

    result = crunch.run("run", dataset["slug"], "--directory", str(tiny_disk), "--quiet")

    workdir = tiny_disk / project["slug"] / "one"
    assert not (workdir / "big.bin").exists()  # neither whole nor cut off
    assert result.returncode == 10, result.stderr  # a dataset failed
    line = error_line(result)
    assert "failed at Setup" in line
    assert f"Cannot write '{workdir / 'big.bin'}': No space left on device" in line
    assert [p.name for p in workdir.iterdir() if "partial" in p.name] == []
    last = Status.objects.filter(dataset__slug=dataset["slug"]).last()
    assert (last.stage, last.state) == (1, 3) and "No space left on device" in last.note


def test_storage_side_partial_names_fit(tmp_path: Path) -> None:
    """The temporary name of a 255-byte name fits: no 'File name too long'."""
    from django.core.files.storage import FileSystemStorage

    from crunchclient.transfer import upload_tree

    work = tmp_path / "work"
    work.mkdir()
    (work / ("z" * 255)).write_bytes(b"long")
    storage = FileSystemStorage(location=tmp_path / "media")
    storage.save("p/d/keep.txt", ContentFile(b"keep"))

    upload_tree(storage, "p/d", work, quiet=True)
    back = download_tree(storage, "p/d", tmp_path / "back", quiet=True)

    assert set(back) == {"z" * 255, "keep.txt"}
