"""Issue 25's "Must show" 1 and 3: a worker with only the URL and a token (files through
the server) ends as a direct run does, and survives kills and server restarts.

Real parts throughout: the client is the ``crunch`` subprocess, the server live_server or
gunicorn, the storage a local folder or moto's S3. A slow link (``Relay``, a TCP relay
that passes a few MiB a second) keeps a transfer going long enough to kill the client or
restart the server while it is under way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from crunch.models import Dataset, Project, Status
from tests import servers
from tests.clientkit import (
    CRUNCH,
    SIX,
    Crunch,
    clean_env,
    free_port,
    statuses,
    write_local_settings,
)
from tests.e2e.test_s3 import BUCKET, KEYS, toml_settings
from tests.factories import make_client_user, make_user

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
PARTIAL = ".crunch-partial-"
COMPARED = (".crunch/setup_md5_checksums.json", ".crunch/upload_md5_checksums.json",
            ".crunch/deleted.txt", ".crunch/script.sh")  # fmt: skip

# Modifies one input, writes in a subfolder, deletes one input; with $LARGE, a file large
# enough for a multipart upload. The same bytes on every run.
WORKFLOW = """\
set -eu
echo changed >> edit.txt
mkdir -p out/deep
md5sum big.bin empty.txt > out/deep/sums.txt
: > out/empty.txt
rm gone.txt
if [ "${LARGE:-0}" -gt 0 ]; then yes crunch | head -c "$LARGE" > out/large.bin; fi
"""


def data(size: int, seed: int = 25) -> bytes:
    return random.Random(seed).randbytes(size)


INPUTS = {
    "empty.txt": b"",
    "edit.txt": b"first line\n",
    "gone.txt": b"deleted by the workflow\n",
    "sub/small.txt": b"x" * 3000,
    "big.bin": data(20 * MiB + 7),  # over the 16 MiB batch limit: a batch of its own
}


def md5(blob: bytes) -> str:
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def no_storage_env(crunch: Crunch, **extra: str) -> dict[str, str]:
    """A node's environment with the URL and the token, and nothing about storage."""
    return clean_env(CRUNCH_URL=crunch.url, CRUNCH_TOKEN=crunch.token, **extra)


@dataclass
class Ran:
    stored: dict[str, bytes]
    notes: list[str]


def run_project(
    crunch: Crunch, mode: str, env: dict[str, str], put: Callable[[str, str, bytes], None],
    stored: Callable[[str], dict[str, bytes]],
) -> Ran:  # fmt: skip
    project = crunch.project(f"Parity {mode}", WORKFLOW)
    dataset = crunch.dataset(project["slug"], "d")
    for rel, blob in INPUTS.items():
        put(dataset["base_file_path"], rel, blob)
    result = crunch.run("loop", "--project", project["slug"], "--quiet", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert statuses(dataset["slug"]) == SIX
    notes = list(
        Status.objects.filter(dataset__slug=dataset["slug"], state=2)
        .order_by("stage")
        .values_list("note", flat=True)
    )
    return Ran(stored(dataset["base_file_path"]), notes)


def assert_same(direct: Ran, server: Ran, large: int) -> None:
    """The stored files and the records agree, path by path and byte by byte."""
    assert not [path for path in server.stored if PARTIAL in path]
    assert set(direct.stored) == set(server.stored)
    for path in sorted(direct.stored):
        if not path.startswith(".crunch/") or path in COMPARED:
            assert direct.stored[path] == server.stored[path], path
    setup = json.loads(server.stored[".crunch/setup_md5_checksums.json"])
    assert setup == {rel: md5(blob) for rel, blob in INPUTS.items()}
    upload = json.loads(server.stored[".crunch/upload_md5_checksums.json"])
    assert set(upload) == set(INPUTS) - {"gone.txt"} | {"out/deep/sums.txt", "out/empty.txt"} | (
        {"out/large.bin"} if large else set()
    )
    assert upload == {path: md5(server.stored[path]) for path in upload}
    assert server.stored[".crunch/deleted.txt"] == b"gone.txt\n"
    assert server.stored["edit.txt"] == b"first line\nchanged\n"
    assert server.stored["big.bin"] == INPUTS["big.bin"]
    if large:
        assert len(server.stored["out/large.bin"]) == large
    # The same work said the same way: Setup's line, and Upload's counts.
    assert direct.notes[0] == server.notes[0]
    assert direct.notes[0].startswith(f"{len(INPUTS)} file(s) downloaded (20.0 MiB), 0 already")
    assert direct.notes[2].split("; ")[1] == server.notes[2].split("; ")[1]


# ------------------------------------------------------------------------ 1. parity


def s3_bucket(endpoint: str) -> Any:
    """test_s3's bucket on this worker's moto server, emptied."""
    import boto3

    s3 = boto3.resource(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    bucket = s3.Bucket(BUCKET)
    bucket.objects.all().delete()
    return bucket


def test_local_storage_through_the_server_matches_a_direct_run(crunch: Crunch) -> None:
    def put(base: str, rel: str, blob: bytes) -> None:
        path = crunch.media / base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)

    def stored(base: str) -> dict[str, bytes]:
        root = crunch.media / base
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    direct = run_project(crunch, "direct", crunch.env, put, stored)
    server = run_project(crunch, "server", no_storage_env(crunch), put, stored)
    assert_same(direct, server, large=0)


def test_s3_through_signed_links_matches_a_direct_run(
    live_server: Any, settings: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": moto_endpoint, **KEYS}},  # noqa: E501
    }  # fmt: skip
    work = tmp_path / "client"
    work.mkdir()
    crunch = Crunch(
        url=live_server.url, token=make_client_user()[1], media=tmp_path, work=work,
        settings_file=toml_settings(tmp_path / "storage.toml", moto_endpoint),
    )  # fmt: skip
    bucket = s3_bucket(moto_endpoint)
    large = 64 * MiB + 5  # over the single-PUT limit: a multipart upload, a link per part

    def put(base: str, rel: str, blob: bytes) -> None:
        bucket.put_object(Key=f"{base}/{rel}", Body=blob)

    def stored(base: str) -> dict[str, bytes]:
        return {
            o.key[len(base) + 1 :]: o.get()["Body"].read()
            for o in bucket.objects.filter(Prefix=base + "/")
        }

    extra = {"LARGE": str(large)}
    direct = run_project(crunch, "direct", {**crunch.env, **extra}, put, stored)
    server = run_project(crunch, "server", no_storage_env(crunch, **extra), put, stored)
    assert_same(direct, server, large=large)
    large_keys = [o for o in bucket.objects.all() if o.key.endswith("/out/large.bin")]
    assert len(large_keys) == 2
    assert all(o.e_tag.strip('"').endswith("-5") for o in large_keys)  # 5 parts of 16 MiB


# ------------------------------------------------------------------ 3. interruptions


class Relay:
    """A slow link in front of the server: a TCP relay passing ``rate`` bytes a second
    each way on each connection (0: as fast as it goes). A connection the server drops
    is dropped on the client's side too, as a restarted server's would be."""

    def __init__(self, port: int, rate: int) -> None:
        self.port = port
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                far.settimeout(None)
            except OSError:
                reset(near)  # the server is down: the client sees the connection drop
                near.close()
                continue
            ends = [near, far]
            for source, target in ((near, far), (far, near)):
                threading.Thread(
                    target=self._pump, args=(source, target, ends), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, target: socket.socket, ends: list[socket.socket]
    ) -> None:
        """One direction: an end passed on as an end, a reset as a reset; the last of the
        two directions closes both sockets."""
        try:
            while chunk := source.recv(64 * 1024):
                target.sendall(chunk)
                if self.rate:
                    time.sleep(len(chunk) / self.rate)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            for end in (source, target):
                reset(end)
        finally:
            with self.lock:
                ends.append(source)
                last = len(ends) == 4
            if last:
                for end in (source, target):
                    end.close()

    def close(self) -> None:
        self.listener.close()


def reset(end: socket.socket) -> None:
    """Drop a connection as a dead process's is dropped: a reset, and wake its reader."""
    try:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@dataclass
class Slow:
    """gunicorn on the test database, local storage, and a client that reaches the server
    only through the slow relay, with no storage settings."""

    crunch: Crunch
    server: servers.GunicornServer
    relay: Relay

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(CRUNCH_URL=self.relay.url, CRUNCH_TOKEN=self.crunch.token, **extra)

    def stop(self) -> None:
        """Stop gunicorn at once (SIGQUIT: workers drop what they are doing)."""
        process = self.server.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=15)
        self.server.process = None

    def restart(self) -> None:
        self.stop()
        self.server.start(timeout=60)


@pytest.fixture
def slow(transactional_db: None, media_root: Path, tmp_path: Path) -> Iterator[Slow]:
    _, token = make_client_user("worker")
    work = tmp_path / "client"
    work.mkdir()
    env = clean_env(CRUNCH_MEDIA_ROOT=str(media_root), **servers.test_database_env())
    server = servers.GunicornServer(
        port=free_port(), env=env, log=tmp_path / "gunicorn.log", workers=2
    )
    server.start(timeout=60)
    relay = Relay(server.port, rate=8 * MiB)
    crunch = Crunch(
        url=server.url, token=token, media=media_root, work=work,
        settings_file=write_local_settings(tmp_path / "storage.toml", media_root),
    )  # fmt: skip
    slow = Slow(crunch=crunch, server=server, relay=relay)
    try:
        yield slow
    finally:
        relay.close()
        slow.stop()


@dataclass
class Node:
    """A ``crunch loop`` in its own session, its output in a file."""

    process: subprocess.Popen[str]
    log: Path

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 120) -> str:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the loop did not finish: {self.log.read_text()}") from None
        output = self.log.read_text()
        assert code == 0, output
        assert "Traceback" not in output
        return output


LOOP = ("loop", "--quiet", "--lease", "5", "--heartbeat", "1")


def start_loop(slow: Slow, name: str, **extra: str) -> Node:
    log = slow.crunch.work / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [CRUNCH, *LOOP, "--directory", str(slow.crunch.work / "node")], env=slow.env(**extra),
            cwd=slow.crunch.work, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    return Node(process, log)


def wait_until(
    what: str, predicate: Callable[[], Any], timeout: float = 60, node: Node | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if node is not None and node.process.poll() is not None:
            raise AssertionError(f"the loop ended before {what}: {node.log.read_text()}")
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def partway(folder: Path, name: str, size: int) -> Callable[[], bool]:
    """A check: is ``name`` being written under folder, at least 1 MiB in and not done?
    The server names its partial file after it (``name.crunch-partial-*``), the client a
    partial file in its folder (``.crunch-partial-*``)."""

    def check() -> bool:
        for path in folder.rglob(f"*{PARTIAL}*"):
            if name in path.name or path.parent == folder / Path(name).parent:
                try:
                    if MiB <= path.stat().st_size < size:
                        return True
                except FileNotFoundError:
                    pass
        return False

    return check


def present(folder: Path, *names: str) -> Callable[[], bool]:
    return lambda: all((folder / name).exists() for name in names)


def wait_for_lease_end(slug: str) -> None:
    row = Dataset.objects.get(slug=slug)
    assert row.lease_expires is not None

    def ended() -> bool:
        return bool(timezone.now() > Dataset.objects.get(slug=slug).lease_expires)

    wait_until("the lease's end", ended, timeout=10)


def note(slug: str, stage: int) -> str:
    last = Status.objects.filter(dataset__slug=slug, stage=stage, state=2).last()
    assert last is not None
    return str(last.note)


BIG = 24 * MiB  # 3 s on the slow link


def test_a_loop_killed_mid_download_keeps_what_it_had(slow: Slow) -> None:
    crunch = slow.crunch
    project = crunch.project("Fetch", "md5sum big.bin a.txt sub/b.txt > sums.txt\n")
    dataset = crunch.dataset(project["slug"], "d", {"a.txt": "a\n", "sub/b.txt": "b\n"})
    base = crunch.media / dataset["base_file_path"]
    (base / "big.bin").write_bytes(data(BIG))
    workdir = crunch.work / "node" / "fetch" / "d"
    first = start_loop(slow, "first")
    wait_until("half of big.bin", partway(workdir, "big.bin", BIG), node=first)
    wait_until("the small files", present(workdir, "a.txt", "sub/b.txt"), node=first)
    first.kill()
    assert not (workdir / "big.bin").exists()
    slow.relay.rate = 0
    wait_for_lease_end(dataset["slug"])

    start_loop(slow, "second").finish()
    assert statuses(dataset["slug"])[-6:] == SIX
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert (workdir / "big.bin").read_bytes() == data(BIG)
    assert not list(workdir.rglob(f"*{PARTIAL}*"))
    assert (base / "sums.txt").read_text().split()[0] == md5(data(BIG))
    assert note(dataset["slug"], 1) == "1 file(s) downloaded (24.0 MiB), 2 already in place."


# Writes the same bytes on every run: a second run's outputs match what the first stored.
OUTPUTS = f"""\
set -eu
mkdir -p sub
echo a > sub/a.txt
echo b > b.txt
yes crunch | head -c {BIG} > big.out
"""


def test_a_loop_killed_mid_upload_sends_only_what_was_not_stored(slow: Slow) -> None:
    crunch = slow.crunch
    project = crunch.project("Send", OUTPUTS)
    dataset = crunch.dataset(project["slug"], "d", {"in.txt": "x\n"})
    base = crunch.media / dataset["base_file_path"]
    first = start_loop(slow, "first")
    wait_until("half of big.out in storage", partway(base, "big.out", BIG), node=first)
    wait_until("the small outputs in storage", present(base, "b.txt", "sub/a.txt"), node=first)
    first.kill()
    assert not (base / "big.out").exists()
    slow.relay.rate = 0
    wait_for_lease_end(dataset["slug"])

    start_loop(slow, "second").finish()
    assert statuses(dataset["slug"])[-6:] == SIX
    assert (base / "big.out").read_bytes() == (b"crunch\n" * BIG)[:BIG]
    assert not list(base.rglob(f"*{PARTIAL}*"))
    assert note(dataset["slug"], 3) == (
        "1 new or modified file(s) uploaded, 24.0 MiB sent; 3 unchanged, 0 deleted by the workflow."
    )


def test_a_server_restart_mid_transfer_is_retried(slow: Slow) -> None:
    crunch = slow.crunch
    project = crunch.project("Restart", "md5sum big.bin > sums.txt\ncp big.bin copy.bin\n")
    dataset = crunch.dataset(project["slug"], "d")
    base = crunch.media / dataset["base_file_path"]
    base.mkdir(parents=True)
    (base / "big.bin").write_bytes(data(BIG))
    workdir = crunch.work / "node" / "restart" / "d"
    node = start_loop(slow, "node", CRUNCH_RETRY_FOR="120")
    wait_until("half of big.bin", partway(workdir, "big.bin", BIG), node=node)
    slow.restart()  # during the download
    wait_until("half of copy.bin in storage", partway(base, "copy.bin", BIG), node=node)
    slow.restart()  # during the upload
    slow.relay.rate = 0
    output = node.finish()
    assert output.count("retrying in") >= 2, output
    assert statuses(dataset["slug"]) == SIX  # one claim, nothing redone
    assert (base / "copy.bin").read_bytes() == data(BIG)
    assert note(dataset["slug"], 1) == "1 file(s) downloaded (24.0 MiB), 0 already in place."


# ------------------------------------------------------- crunch files and crunch download


@pytest.mark.parametrize("role", ["viewer", "maintainer"])
def test_files_and_download_with_only_the_url_and_a_token(crunch: Crunch, role: str) -> None:
    project = crunch.project("Look", "true\n")
    dataset = crunch.dataset(project["slug"], "d", {"a.txt": "a\n", "sub/b.txt": "bb\n"})
    (crunch.media / dataset["base_file_path"] / "big.bin").write_bytes(data(20 * MiB))
    _, token = make_user(role, role=role, projects=[Project.objects.get(slug=project["slug"])])
    server = clean_env(CRUNCH_URL=crunch.url, CRUNCH_TOKEN=token)
    direct = {**server, "CRUNCH_STORAGE_SETTINGS": str(crunch.settings_file)}

    listed = {mode: crunch.run("files", "look:d", env=env) for mode, env in
              (("direct", direct), ("server", server))}  # fmt: skip
    assert listed["server"].returncode == 0, listed["server"].stderr
    assert listed["server"].stdout == listed["direct"].stdout
    assert "3 file(s), 20.0 MiB in" in listed["server"].stdout

    got = crunch.run("download", "look:d", "--dest", "out", "--quiet", env=server)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[-1] == "Downloaded 1 dataset(s)."
    assert "3 file(s) in" in got.stdout
    here = crunch.work / "out" / "look" / "d"
    assert (here / "big.bin").read_bytes() == data(20 * MiB)
    assert (here / "sub/b.txt").read_text() == "bb\n"
    assert Dataset.objects.get(slug="look:d").state == "pending"  # nothing claimed
