"""Issue 22 (6, 7): links planted in local storage and slugs that name folders above
--directory. The client runs as a real subprocess against a live server; the tests look
at the files on disk: nothing outside the dataset's folders is read or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crunch.models import Dataset, Project, Status
from tests.clientkit import Crunch, error_line

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- not-for-the-client"


def plant(crunch: Crunch, tmp_path: Path) -> tuple[dict, dict, Path, Path]:
    """Datasets ``a`` (links planted in its stored folder) and ``b`` (a sibling); a node's
    secret key and a folder outside storage. Returns (a, b, secret, outside)."""
    secret = tmp_path / "home/.ssh/id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "there.txt").write_text("outside storage")
    project = crunch.project("Links", WORKFLOW)
    a = crunch.dataset(project["slug"], "a", {"input.txt": "one two three\n"})
    b = crunch.dataset(project["slug"], "b", {"b.txt": "b's own data\n"})
    stored_a = crunch.media / a["base_file_path"]
    stored_b = crunch.media / b["base_file_path"]
    (stored_a / "leak_file").symlink_to(secret)
    (stored_a / "leak_dir").symlink_to(outside, target_is_directory=True)
    (stored_a / "sibling").symlink_to(os.path.relpath(stored_b, stored_a))
    return a, b, secret, outside


def everything_under(folder: Path) -> dict[str, str]:
    """{relative path: text} of every file under folder, links not followed."""
    found: dict[str, str] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                found[path.relative_to(folder).as_posix()] = path.read_text(errors="replace")
    return found


WORKFLOW = "cat input.txt | wc -w > count.txt\nls -a > seen.txt\n"


def test_setup_copies_nothing_through_a_link_in_storage(crunch: Crunch, tmp_path: Path) -> None:
    a, b, secret, outside = plant(crunch, tmp_path)

    result = crunch.run("run", a["slug"], "--quiet")

    assert result.returncode == 0, result.stderr
    for name in ("leak_file", "leak_dir", "sibling"):
        assert f"Not following link '{name}': it is in storage" in result.stderr
    workdir = crunch.work / "crunch-work" / "links" / "a"
    work = everything_under(workdir)
    assert {"input.txt", "count.txt", "seen.txt"} <= set(work)
    assert not {"leak_file", "leak_dir", "sibling"} & set(os.listdir(workdir))
    assert all(SECRET not in text and "b's own data" not in text for text in work.values())
    assert all("outside storage" not in text for text in work.values())
    # Nothing else was written anywhere: b's folder, the outside folder, the secret.
    assert crunch.stored(b) == {"b.txt": "b's own data\n"}
    assert everything_under(outside) == {"there.txt": "outside storage"}
    assert secret.read_text() == SECRET
    assert Dataset.objects.get(slug=a["slug"]).state == "completed"
    stored_a = crunch.media / a["base_file_path"]
    assert (stored_a / "leak_file").is_symlink()  # left as they were, unused


ESCAPE = """\
mkdir -p leak_dir sibling
echo evil > leak_dir/evil.txt
echo evil > sibling/evil.txt
echo mine > leak_file
"""


def test_upload_writes_nothing_through_a_link_in_storage(crunch: Crunch, tmp_path: Path) -> None:
    a, b, secret, outside = plant(crunch, tmp_path)
    Project.objects.filter(slug="links").update(workflow=ESCAPE, max_attempts=1)

    result = crunch.run("run", a["slug"], "--quiet")

    assert result.returncode == 6, result.stderr
    line = error_line(result)
    assert "failed at Upload" in line and "links in storage are never followed" in line
    assert "leak_dir" in line or "sibling" in line
    assert everything_under(outside) == {"there.txt": "outside storage"}
    assert crunch.stored(b) == {"b.txt": "b's own data\n"}
    assert secret.read_text() == SECRET
    assert not list(tmp_path.rglob("evil.txt*")) or all(
        crunch.work in path.parents for path in tmp_path.rglob("evil.txt")
    )
    last = Status.objects.filter(dataset__slug=a["slug"]).last()
    assert (last.stage, last.state) == (3, 3)


def test_slugs_that_climb_out_of_directory_fail_before_any_file_is_touched(
    crunch: Crunch,
) -> None:
    """A server (or a row written around the API) answers a claim with project slug '..'
    and dataset slug 'x:..': <dir>/../.. is never made, used or deleted."""
    project = Project.objects.create(name="Up", slug="..", workflow="echo ran > ran.txt\n")
    Dataset.objects.create(project=project, name="up", slug="x:..", base_file_path="hostile/x")
    (crunch.media / "hostile/x").mkdir(parents=True)
    (crunch.media / "hostile/x/in.txt").write_text("in")
    directory = crunch.work / "a" / "b" / "dir"
    directory.mkdir(parents=True)
    (crunch.work / "a" / "keep.txt").write_text("keep")
    before = sorted(p.relative_to(crunch.work) for p in crunch.work.rglob("*"))

    result = crunch.run("loop", "--directory", str(directory), "--cleanup", "--quiet")

    assert result.returncode == 10, result.stderr  # a loop's: at least one dataset failed
    assert "Refusing the project slug '..' from the server" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(crunch.work) for p in crunch.work.rglob("*")) == before
    assert (crunch.work / "a" / "keep.txt").read_text() == "keep"
    last = Status.objects.filter(dataset__slug="x:..").last()
    assert (last.stage, last.state) == (1, 3)
    assert last.note.startswith("Refusing the project slug '..' from the server")


def test_run_refuses_a_climbing_slug_before_claiming(crunch: Crunch) -> None:
    project = Project.objects.create(name="Up", slug="..", workflow="echo ran > ran.txt\n")
    Dataset.objects.create(project=project, name="x", slug="up:x", base_file_path="hostile/x")

    result = crunch.run("run", "up:x", "--quiet")

    assert result.returncode == 6, result.stderr
    assert error_line(result).endswith(
        "Refusing the project slug '..' from the server: it is not a plain folder name, so "
        "its folder would not stay inside --directory."
    )
    row = Dataset.objects.get(slug="up:x")
    assert (row.state, row.attempts, row.claim_id) == ("pending", 0, None)
    assert not Status.objects.filter(dataset=row).exists()
    assert list(crunch.work.rglob("*")) == [crunch.work / "crunch-work"]  # made empty
