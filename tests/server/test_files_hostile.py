"""Hostile input on a dataset's files through the server (issue 25): names, bundles,
bodies and sizes a node should never send. Each answer is a 400, 404 or 409 with a
one-line detail, never a 500, and nothing is stored, in the dataset or anywhere else.

Local storage; the role x public/private cells are in the permission matrix.
"""

from __future__ import annotations

import io
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def node(media_root: Path) -> dict[str, Any]:
    """A worker holding the claim on ``alpha:a1``, whose folder holds ``input.txt``."""
    alpha = make_project(name="Alpha", slug="alpha")
    a1 = make_dataset(alpha, name="a1")
    folder = media_root / a1.base_file_path
    folder.mkdir(parents=True)
    (folder / "input.txt").write_text("alpha input")
    token = make_user("node", role="worker", projects=[alpha])[1]
    worker = client_for(token)
    claim = worker.post(f"/api/datasets/{a1.slug}/claim/", {"holder": "test"}, format="json")
    assert claim.status_code == 200, claim.content
    return {
        "root": media_root, "slug": a1.slug, "base": a1.base_file_path, "worker": worker,
        "token": token,
        "claim": claim.json()["claim"]["id"],
    }  # fmt: skip


def stored_files(root: Path) -> list[str]:
    """Every file under the storage's root, as relative paths."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def refused(answer: Any, *codes: int) -> None:
    """A 4xx of ``codes`` (400 by default) with a one-line detail."""
    assert answer.status_code in (codes or (400,)), answer.content[:300]
    if answer.status_code == 404 and "json" not in answer.get("Content-Type", ""):
        return  # no URL matches (a newline in a path): Django's own 404 page
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail


def put_file(node: dict[str, Any], path: str, data: bytes = b"evil", **extra: str) -> Any:
    return node["worker"].generic(
        "PUT", f"/api/datasets/{node['slug']}/files/{path}", data,
        content_type="application/octet-stream", HTTP_X_CRUNCH_CLAIM=node["claim"], **extra,
    )  # fmt: skip


def put_bundle(node: dict[str, Any], data: bytes, **extra: str) -> Any:
    return node["worker"].generic(
        "PUT", f"/api/datasets/{node['slug']}/bundle/", data,
        content_type="application/x-tar", HTTP_X_CRUNCH_CLAIM=node["claim"], **extra,
    )  # fmt: skip


def post(node: dict[str, Any], endpoint: str, body: Any) -> Any:
    return node["worker"].post(f"/api/datasets/{node['slug']}/{endpoint}/", body, format="json")


def tar_with(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def member(name: str, data: bytes = b"", **fields: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


@pytest.mark.parametrize(
    "path",
    [
        "a%01b.txt", "tab%09name", "new%0Aline.txt", "nul%00.txt", "..", "../input.txt",
        "a/../../x", "%2E%2E/x", "x%5C..%5Cy", "a" * 1100, "%2Fetc%2Fpasswd", "dir/",
        "x.crunch-partial-1",
    ],
)  # fmt: skip
def test_a_name_that_is_not_clean_is_refused_both_ways(node, path):
    before = stored_files(node["root"])

    written = put_file(node, path)
    read = node["worker"].get(f"/api/datasets/{node['slug']}/files/{path}")

    refused(written, 400, 404)
    refused(read, 400, 404)
    assert stored_files(node["root"]) == before


def test_a_unicode_name_is_stored_under_exactly_that_name(node):
    answer = put_file(node, "%C3%BC/%C3%A9%E2%82%AC.txt", b"ok")

    assert answer.status_code == 200, answer.content
    assert (node["root"] / node["base"] / "ü" / "é€.txt").read_bytes() == b"ok"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("bundle", {"paths": [f"f{index}" for index in range(1001)]}),
        ("links", {"read": [f"f{index}" for index in range(1001)]}),
        ("links", {"read": ["a"] * 600, "write": [{"path": "b", "size": 1}] * 600}),
        ("links", {"claim": "{claim}", "write": [{"path": "f", "size": 1}] * 1001}),
    ],
)  # fmt: skip
def test_more_than_1000_names_are_refused(node, endpoint, body):
    body = {key: node["claim"] if value == "{claim}" else value for key, value in body.items()}

    refused(post(node, endpoint, body))


@pytest.mark.parametrize(
    "size", [-1, 5 * 1024**4 + 1, 10**30, True, False, "5", 1.5, None],
    ids=["negative", "over-5TiB", "huge", "true", "false", "string", "float", "null"],
)  # fmt: skip
def test_a_links_write_size_must_be_bytes(node, size):
    refused(post(node, "links", {"claim": node["claim"], "write": [{"path": "x", "size": size}]}))


@pytest.mark.parametrize("endpoint", ["links", "complete", "bundle"])
@pytest.mark.parametrize("body", [["input.txt"], "input.txt", 7, None], ids=repr)
def test_a_json_body_that_is_not_an_object_is_refused(node, endpoint, body):
    before = stored_files(node["root"])

    answer = node["worker"].post(f"/api/datasets/{node['slug']}/{endpoint}/", body, format="json")

    refused(answer)
    assert stored_files(node["root"]) == before


PAX_CLIMB = member("ok.txt", b"evil", pax_headers={"path": "../x"})
BUNDLES = {
    "pax path ../x": tar_with(PAX_CLIMB),
    "pax path absolute": tar_with(member("ok.txt", b"evil", pax_headers={"path": "/tmp/x"})),
    "hardlink": tar_with(member("ok.txt", type=tarfile.LNKTYPE, linkname="input.txt")),
    "symlink": tar_with(member("ok.txt", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
    "char device": tar_with(member("ok.txt", type=tarfile.CHRTYPE, devmajor=1, devminor=3)),
    "fifo": tar_with(member("ok.txt", type=tarfile.FIFOTYPE)),
    "folder": tar_with(member("ok", type=tarfile.DIRTYPE)),
    "member larger than the body": tar_with(member("ok.txt", b"x" * 5000))[:1536],
    "not a tar": b"this is not a tar stream at all\n" * 40,
    "empty": b"",
    "control char name": tar_with(member("a\x01b", b"evil")),
}


@pytest.mark.parametrize("body", list(BUNDLES.values()), ids=list(BUNDLES))
def test_a_hostile_bundle_stores_nothing(node, body):
    before = stored_files(node["root"])

    answer = put_bundle(node, body)

    if body == b"":  # an empty body is an empty bundle: nothing to store
        assert answer.status_code in (200, 400), answer.content
    else:
        refused(answer)
    assert stored_files(node["root"]) == before


def test_a_bundle_refused_halfway_stores_nothing(node):
    before = stored_files(node["root"])

    answer = put_bundle(node, tar_with(member("good.txt", b"good"), PAX_CLIMB))

    refused(answer)
    assert stored_files(node["root"]) == before


@pytest.mark.parametrize("length", ["", "abc", "-5"], ids=["missing", "not a number", "negative"])
def test_a_body_needs_its_content_length(node, length):
    before = stored_files(node["root"])

    answers = [
        put_file(node, "x.txt", b"abc", CONTENT_LENGTH=length),
        put_bundle(node, tar_with(member("x.txt", b"abc")), CONTENT_LENGTH=length),
    ]

    for answer in answers:
        refused(answer)
    assert stored_files(node["root"]) == before


def raw_put(url: str, path: str, headers: str, body: bytes) -> bytes:
    """The status line of a PUT sent by hand: the body shorter than announced, then EOF.

    The socket's timeout keeps a server that waits for the rest from hanging the test.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)
        return sock.makefile("rb").readline()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["files/huge.bin", "bundle/"])
@pytest.mark.parametrize("length", [10**15, 2**63 + 1])
def test_a_huge_content_length_with_a_short_body_stores_nothing(
    node, live_server, endpoint, length
):
    before = stored_files(node["root"])
    headers = (
        f"Authorization: Token {node['token']}\r\nX-Crunch-Claim: {node['claim']}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n"
    )

    status = raw_put(live_server.url, f"/api/datasets/{node['slug']}/{endpoint}", headers, b"abc")

    assert status.split()[1] in (b"400", b"413"), status
    assert stored_files(node["root"]) == before


def test_one_links_request_cannot_ask_for_millions_of_part_links(node):
    """Each write of 5 TiB is 10,000 parts: two of them are more than one request signs."""
    huge = [{"path": f"big{i}.bin", "size": 5 * 1024**4} for i in range(2)]

    answer = node["worker"].post(
        f"/api/datasets/{node['slug']}/links/",
        {"claim": node["claim"], "write": huge}, format="json",
    )  # fmt: skip

    assert answer.status_code == 400
    assert "at most 10000 links" in answer.json()["detail"]
