"""What happens to a dataset's stored files when it or its project is deleted (issue 22, 8).

A new project or dataset that takes a deleted one's slug must never see its files, and
deleting never follows a link out of the dataset's folder.
"""

from __future__ import annotations

import io
import os

import pytest
import requests

from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def api(live_server, token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    session.base = live_server.url + "/api/"  # type: ignore[attr-defined]
    return session


def store(root, dataset, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / dataset.base_file_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_deleted_dataset_takes_its_files_and_a_new_one_with_its_slug_sees_none(
    live_server, media_root, tmp_path
):
    project = make_project(name="Alpha", slug="alpha", is_public=True)
    old = make_dataset(project, name="a1")
    store(media_root, old, {"result.txt": "old secret", "sub/deep.txt": "deep"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not crunch's")
    os.symlink(outside, media_root / old.base_file_path / "link_dir")
    os.symlink(outside / "keep.txt", media_root / old.base_file_path / "link_file")
    session = api(live_server, make_user("keeper", role="maintainer")[1])

    answer = session.delete(f"{session.base}datasets/{old.slug}/", timeout=10)  # type: ignore[attr-defined]

    assert answer.status_code == 204
    assert not (media_root / "crunch" / "alpha" / "a1").exists()
    assert (outside / "keep.txt").read_text() == "not crunch's"  # links removed, not followed
    new = make_dataset(project, name="a1")
    assert new.base_file_path == old.base_file_path
    page = requests.get(f"{live_server.url}{new.get_absolute_url()}", timeout=10)
    assert page.status_code == 200 and "result.txt" not in page.text


def test_a_deleted_project_takes_every_dataset_folder(live_server, media_root):
    project = make_project(name="Beta", slug="beta")
    datasets = [make_dataset(project, name=f"b{i}") for i in range(3)]
    for dataset in datasets:
        store(media_root, dataset, {"in.txt": dataset.slug})
    other = make_dataset(make_project(name="Gamma", slug="gamma"), name="g1")
    store(media_root, other, {"in.txt": "gamma's"})
    session = api(live_server, make_user("boss", role="maintainer")[1])

    answer = session.delete(f"{session.base}projects/beta/", timeout=10)  # type: ignore[attr-defined]

    assert answer.status_code == 204
    assert not any((media_root / d.base_file_path).exists() for d in datasets)
    assert (media_root / other.base_file_path / "in.txt").read_text() == "gamma's"


def test_files_stay_when_the_site_keeps_them(live_server, media_root, settings):
    settings.CRUNCH_DELETE_STORED_FILES = False
    dataset = make_dataset(make_project(name="Delta", slug="delta"), name="d1")
    store(media_root, dataset, {"in.txt": "kept"})
    session = api(live_server, make_user("keeper", role="maintainer")[1])

    answer = session.delete(f"{session.base}datasets/{dataset.slug}/", timeout=10)  # type: ignore[attr-defined]

    assert answer.status_code == 204
    assert (media_root / dataset.base_file_path / "in.txt").read_text() == "kept"


def test_deleting_files_in_s3_removes_every_key_under_the_folder(s3_storage):
    from crunch.services.removal import delete_stored_folder

    for name in ("crunch/p/d/a.txt", "crunch/p/d/sub/b.txt", "crunch/p/d2/c.txt"):
        s3_storage.save(name, io.BytesIO(b"x"))

    assert delete_stored_folder("crunch/p/d", s3_storage) == 2
    assert s3_storage.listdir("crunch/p") == (["d2"], [])
