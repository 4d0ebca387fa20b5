"""A dataset's files through the server (issue 25): the one access rule and the streams.

Local storage here; S3's signed links are in tests/client/test_server_transfer.py with
moto, and the role x public/private cells in the permission matrix.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile

import pytest
import requests
from rest_framework.test import APIClient

from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def world(media_root):
    alpha = make_project(name="Alpha", slug="alpha")
    beta = make_project(name="Beta", slug="beta")
    a1 = make_dataset(alpha, name="a1")
    b1 = make_dataset(beta, name="b1")
    for dataset, text in ((a1, "alpha input"), (b1, "beta secret")):
        folder = media_root / dataset.base_file_path
        folder.mkdir(parents=True)
        (folder / "input.txt").write_text(text)
    worker = client_for(make_user("node", role="worker", projects=[alpha])[1])
    claim = worker.post(f"/api/datasets/{a1.slug}/claim/", {"holder": "test"}, format="json")
    assert claim.status_code == 200, claim.content
    return {
        "root": media_root, "a1": a1, "b1": b1, "worker": worker,
        "claim": claim.json()["claim"]["id"],
    }  # fmt: skip


def put(client: APIClient, slug: str, path: str, data: bytes, claim: str | None):
    headers = {"HTTP_X_CRUNCH_CLAIM": claim} if claim else {}
    return client.generic(
        "PUT", f"/api/datasets/{slug}/files/{path}", data,
        content_type="application/octet-stream", **headers,
    )  # fmt: skip


def test_the_claim_holder_reads_and_writes_its_dataset(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]

    manifest = worker.get(f"/api/datasets/{a1.slug}/manifest/").json()
    got = worker.get(f"/api/datasets/{a1.slug}/files/input.txt")
    written = put(worker, a1.slug, "out/result.txt", b"42\n", claim)

    assert [entry["path"] for entry in manifest["files"]] == ["input.txt"]
    assert manifest["links"] is False and manifest["files"][0]["size"] == len("alpha input")
    under = worker.get(f"/api/datasets/{a1.slug}/manifest/?under=out").json()["files"]
    assert [entry["path"] for entry in under] == ["out/result.txt"]
    assert b"".join(got.streaming_content) == b"alpha input"
    assert written.status_code == 200, written.content
    assert (world["root"] / a1.base_file_path / "out" / "result.txt").read_bytes() == b"42\n"


def test_a_bundle_moves_many_small_files_each_way(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for index in range(5):
            data = f"file {index}".encode()
            info = tarfile.TarInfo(f"many/{index}.txt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    stored = worker.generic(
        "PUT", f"/api/datasets/{a1.slug}/bundle/", buffer.getvalue(),
        content_type="application/x-tar", HTTP_X_CRUNCH_CLAIM=claim,
    )  # fmt: skip
    back = worker.post(
        f"/api/datasets/{a1.slug}/bundle/", {"paths": ["many/3.txt", "input.txt"]}, format="json"
    )

    assert stored.status_code == 200, stored.content
    assert len(stored.json()["stored"]) == 5
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(back.streaming_content)), mode="r|")
    assert [(m.name, archive.extractfile(m).read()) for m in archive] == [
        ("many/3.txt", b"file 3"), ("input.txt", b"alpha input"),
    ]  # fmt: skip


def test_another_projects_files_are_not_there(world):
    worker, b1, claim = world["worker"], world["b1"], world["claim"]

    answers = [
        worker.get(f"/api/datasets/{b1.slug}/manifest/"),
        worker.get(f"/api/datasets/{b1.slug}/files/input.txt"),
        put(worker, b1.slug, "input.txt", b"overwritten", claim),
        worker.post(f"/api/datasets/{b1.slug}/bundle/", {"paths": ["input.txt"]}, format="json"),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404, 404]
    assert (world["root"] / b1.base_file_path / "input.txt").read_text() == "beta secret"


@pytest.mark.parametrize(
    "path", ["../b1/input.txt", "a/../../x", "/etc/passwd", "x\x00y", "x.crunch-partial-1"]
)
def test_no_name_writes_outside_the_dataset(world, path):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]

    answer = put(worker, a1.slug, path, b"evil", claim)

    assert answer.status_code in (400, 404)
    assert (world["root"] / world["b1"].base_file_path / "input.txt").read_text() == "beta secret"
    assert not (world["root"] / a1.base_file_path / "x").exists()


def test_a_bundle_cannot_hold_a_link_or_a_climbing_name(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    for build in ("link", "climb"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("evil" if build == "link" else "../b1/input.txt")
            if build == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "../../b1/input.txt"
                archive.addfile(info)
            else:
                info.size = 4
                archive.addfile(info, io.BytesIO(b"evil"))

        answer = worker.generic(
            "PUT", f"/api/datasets/{a1.slug}/bundle/", buffer.getvalue(),
            content_type="application/x-tar", HTTP_X_CRUNCH_CLAIM=claim,
        )  # fmt: skip

        assert answer.status_code == 400, answer.content
    assert not (world["root"] / a1.base_file_path / "evil").exists()


def test_a_write_needs_the_live_claim(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]

    without = put(worker, a1.slug, "x.txt", b"x", None)
    wrong = put(worker, a1.slug, "x.txt", b"x", "00000000-0000-4000-8000-000000000000")
    released = worker.post(f"/api/claims/{claim}/release/")
    after = put(worker, a1.slug, "x.txt", b"x", claim)

    assert released.status_code in (200, 204)
    assert [without.status_code, wrong.status_code, after.status_code] == [409, 409, 409]
    assert not (world["root"] / a1.base_file_path / "x.txt").exists()


@pytest.mark.django_db(transaction=True)
def test_a_short_body_stores_nothing(world, live_server):
    a1, claim = world["a1"], world["claim"]
    token = world["worker"]._credentials["HTTP_AUTHORIZATION"]
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"PUT /api/datasets/{a1.slug}/files/short.txt HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {token}\r\nX-Crunch-Claim: {claim}\r\n"
            "Content-Length: 10\r\nConnection: close\r\n\r\nabc".encode()
        )
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").readline()

    assert b" 400 " in answer
    assert sorted(path.name for path in (world["root"] / a1.base_file_path).iterdir()) == [
        "input.txt"
    ]


def test_a_link_in_storage_is_neither_read_nor_written_through(world, tmp_path):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    folder = world["root"] / a1.base_file_path
    (folder / "peek").symlink_to(world["root"] / world["b1"].base_file_path / "input.txt")
    (folder / "sub").symlink_to(world["root"] / world["b1"].base_file_path)

    read = worker.get(f"/api/datasets/{a1.slug}/files/peek")
    written = put(worker, a1.slug, "sub/input.txt", b"evil", claim)
    manifest = worker.get(f"/api/datasets/{a1.slug}/manifest/").json()

    assert read.status_code == 404 and written.status_code == 400
    assert [entry["path"] for entry in manifest["files"]] == ["input.txt"]
    assert (world["root"] / world["b1"].base_file_path / "input.txt").read_text() == "beta secret"


@pytest.mark.parametrize(
    ("how", "header", "value"),
    [("x-sendfile", "X-Sendfile", "{root}/{base}/input.txt"),
     ("x-accel-redirect", "X-Accel-Redirect", "/protected/{base}/input.txt")],
)  # fmt: skip
def test_the_web_server_can_send_the_bytes(world, settings, how, header, value):
    settings.CRUNCH_SENDFILE = how
    a1 = world["a1"]

    answer = world["worker"].get(f"/api/datasets/{a1.slug}/files/input.txt")

    assert answer.status_code == 200 and answer.content == b""
    assert answer[header] == value.format(root=world["root"], base=a1.base_file_path)


@pytest.fixture
def on_s3(world, settings, s3_storage):
    """The world's datasets, with S3 (moto) as the server's storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": s3_storage.bucket_name, "endpoint_url": s3_storage.endpoint_url,
                "access_key": "testing", "secret_key": "testing", "region_name": "us-east-1",
                "file_overwrite": True,
            },
        },
    }  # fmt: skip
    for dataset in (world["a1"], world["b1"]):
        s3_storage.save(f"{dataset.base_file_path}/input.txt", io.BytesIO(b"on s3"))
    return s3_storage


def test_signed_links_name_exact_keys_under_the_dataset(world, on_s3):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]

    manifest = worker.get(f"/api/datasets/{a1.slug}/manifest/").json()
    answer = worker.post(
        f"/api/datasets/{a1.slug}/links/",
        {"claim": claim, "read": ["input.txt"], "write": [{"path": "out/r.txt", "size": 3}]},
        format="json",
    )
    links = answer.json()["links"]
    stored = requests.put(links[1]["url"], data=b"42\n", timeout=10)

    assert manifest["links"] is True and manifest["files"][0]["md5"] is not None
    assert requests.get(links[0]["url"], timeout=10).content == b"on s3"
    assert f"/{a1.base_file_path}/input.txt?" in links[0]["url"]
    assert f"/{a1.base_file_path}/out/r.txt?" in links[1]["url"]
    assert stored.status_code == 200
    assert on_s3.open(f"{a1.base_file_path}/out/r.txt").read() == b"42\n"


def test_a_large_upload_goes_in_parts_completed_by_the_server(world, on_s3):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    size = 70 * 1024 * 1024
    link = worker.post(
        f"/api/datasets/{a1.slug}/links/",
        {"claim": claim, "write": [{"path": "big.bin", "size": size}]}, format="json",
    ).json()["links"][0]  # fmt: skip
    part = link["part_size"]
    etags = [
        requests.put(url, data=b"x" * min(part, size - i * part), timeout=30).headers["ETag"]
        for i, url in enumerate(link["parts"])
    ]

    other = worker.post(
        f"/api/datasets/{world['b1'].slug}/complete/",
        {"claim": claim, "path": "big.bin", "upload_id": link["upload_id"], "etags": etags},
        format="json",
    )
    done = worker.post(
        f"/api/datasets/{a1.slug}/complete/",
        {"claim": claim, "path": "big.bin", "upload_id": link["upload_id"], "etags": etags},
        format="json",
    )

    assert len(link["parts"]) == 5 and other.status_code == 404
    assert done.status_code == 204, done.content
    assert on_s3.size(f"{a1.base_file_path}/big.bin") == size


def test_links_for_another_project_or_a_released_claim_are_refused(world, on_s3):
    worker, a1, b1, claim = world["worker"], world["a1"], world["b1"], world["claim"]
    write = {"claim": claim, "write": [{"path": "input.txt", "size": 4}]}

    other = worker.post(f"/api/datasets/{b1.slug}/links/", write, format="json")
    worker.post(f"/api/claims/{claim}/release/")
    released = worker.post(f"/api/datasets/{a1.slug}/links/", write, format="json")

    assert (other.status_code, released.status_code) == (404, 409)


def test_without_presigning_s3_files_pass_through_the_server(world, on_s3, settings):
    settings.CRUNCH_PRESIGN = False
    worker, a1, claim = world["worker"], world["a1"], world["claim"]

    manifest = worker.get(f"/api/datasets/{a1.slug}/manifest/").json()
    written = put(worker, a1.slug, "out.txt", b"through", claim)
    read = worker.get(f"/api/datasets/{a1.slug}/files/out.txt")

    assert manifest["links"] is False
    assert written.status_code == 200
    assert b"".join(read.streaming_content) == b"through"


def test_a_runs_setup_removes_half_written_files_of_a_killed_upload(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    folder = world["root"] / a1.base_file_path
    (folder / "out.txt.crunch-partial-1a2b").write_text("cut off")

    viewer_look = worker.get(f"/api/datasets/{a1.slug}/manifest/?tidy=1")
    tidied = worker.get(f"/api/datasets/{a1.slug}/manifest/?tidy=1", HTTP_X_CRUNCH_CLAIM=claim)

    assert viewer_look.status_code == 409  # tidying needs the claim
    assert tidied.status_code == 200
    assert sorted(path.name for path in folder.iterdir()) == ["input.txt"]


def test_the_claim_holder_learns_a_stored_files_md5(world):
    worker, a1, claim = world["worker"], world["a1"], world["claim"]
    body = {"claim": claim, "paths": ["input.txt", "missing.txt"]}

    answer = worker.post(f"/api/datasets/{a1.slug}/checksums/", body, format="json")
    viewer = worker.post(
        f"/api/datasets/{a1.slug}/checksums/", {"paths": ["input.txt"]}, format="json"
    )

    assert answer.json()["md5"] == {
        "input.txt": hashlib.md5(b"alpha input").hexdigest(), "missing.txt": None,
    }  # fmt: skip
    assert viewer.status_code == 409  # no claim: the server reads files for its holder only
