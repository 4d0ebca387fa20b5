"""The server half of benchmarks/transfer.py: ``--transfer server`` beside direct, on local
storage and on S3 (moto's server), for issue 25's targets.

Per storage: a fresh SQLite database and gunicorn serving the testproject (``--workers``
sync workers, or gthread with ``--threads``), its storage the same folder or bucket the
direct transfers use. Per case: two datasets, ``<case>-in`` holding the tree (downloads
copy it into an empty folder) and ``<case>-out``, claimed, whose emptied folder uploads
fill with the tree (new files, so the checksum pass is included). Direct is
download_tree/upload_tree on the Django storage; server is the same functions on a
ServerBackend with the claim. Every transfer runs in a child process (``python -m
benchmarks.transfer_server --child SPEC``) that times itself and reports its own VmHWM, so
both modes pay the same start-up, outside the clock. The server's peak is the highest
VmHWM of its workers; gunicorn restarts for each case, so the peak is that case's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.baseline import create_project
from benchmarks.harness import CURRENT, Server, database, moto_server, server_env, session
from benchmarks.timing import Table, clear, evict

MiB = 1024 * 1024
BUCKET = "crunch-served"
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TARGETS = {"local": {"a": 2.0, "b": 3.0, "c": 2.0}, "s3": {"a": 1.25, "b": 1.25, "c": 1.25}}
"""Issue 25: server-mode time / direct-mode time, at most."""
PEAK_MIB = 150
"""Issue 25: the server's and the client's peak RSS in server mode, each under this."""


class ThreadedServer(Server):
    """harness.Server with gthread workers when ``threads`` > 1."""

    def __init__(self, *args: Any, threads: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads

    def command(self) -> list[str]:
        extra = ["--threads", str(self.threads)] if self.threads > 1 else []
        return super().command() + extra

    def peak_kib(self) -> int:
        """The highest VmHWM among the live workers (not the master, which moves no bytes)."""
        if self.process is None:
            return 0
        peaks = [0]
        for worker in psutil.Process(self.process.pid).children():
            try:
                peaks.append(vm_hwm(Path(f"/proc/{worker.pid}/status").read_text()))
            except OSError:
                continue
        return max(peaks)


def vm_hwm(status: str) -> int:
    """VmHWM in KiB from a /proc/<pid>/status text (not ru_maxrss: Linux carries that
    over exec from the forking parent)."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@dataclass
class Site:
    """One storage as both modes see it: the direct storage's spec, the server, a token."""

    kind: str
    spec: dict[str, str]
    server: ThreadedServer
    token: str
    project: str
    media: Path
    endpoint: str = ""
    claims: dict[str, str] = field(default_factory=dict)

    def folder(self, slug: str) -> str:
        answer = session(self.token).get(f"{self.server.url}/api/datasets/{slug}/", timeout=30)
        answer.raise_for_status()
        return str(answer.json()["base_file_path"]).strip("/")

    def empty(self, folder: str) -> None:
        """Remove every file under the dataset folder ``folder``, straight from storage."""
        if self.kind == "local":
            shutil.rmtree(self.media / folder, ignore_errors=True)
            return
        client = s3_client(self.endpoint)
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{folder}/"
        ):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


@contextmanager
def site(kind: str, work: Path, args: argparse.Namespace) -> Iterator[Site]:
    """A migrated database, a worker token, gunicorn (not started) and a project."""
    folder = work / f"served-{kind}"
    media = folder / "media"
    media.mkdir(parents=True)
    with database("sqlite", folder, "transfer") as db, _endpoint(kind) as endpoint:
        extra = {"CRUNCH_MEDIA_ROOT": str(media), "CRUNCH_LEASE_SECONDS": "7200"}
        spec = {"kind": "local", "location": str(media)}
        if kind == "s3":
            s3_client(endpoint).create_bucket(Bucket=BUCKET)
            extra |= {"CRUNCH_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": BUCKET,
                      "AWS_S3_ENDPOINT_URL": endpoint, **S3_KEYS}  # fmt: skip
            spec = {"kind": "s3", "endpoint": endpoint, "bucket": BUCKET}
        env = server_env(**db.settings, **extra)
        CURRENT.manage("migrate", "--verbosity", "0", env=env)
        maintainer, worker = CURRENT.tokens(env, f"transfer-{kind}")
        server = ThreadedServer(
            env=env, log=folder / "gunicorn.log", workers=args.workers, threads=args.threads,
            timeout=600,
        )  # fmt: skip
        with server:
            server.start()
            project = create_project(server, maintainer, f"Transfer {kind}", "true")
            names = [{"name": f"{case}-{end}"} for case in args.cases for end in ("in", "out")]
            session(maintainer).post(
                f"{server.url}/api/projects/{project}/datasets/", json=names, timeout=60
            ).raise_for_status()
            yield Site(kind, spec, server, worker, project, media, endpoint)


@contextmanager
def _endpoint(kind: str) -> Iterator[str]:
    if kind == "s3":
        with moto_server() as endpoint:
            yield endpoint
    else:
        yield ""


def served_benchmarks(
    work: Path, cases: dict[str, Path], labels: dict[str, str], table: Table,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """Download and upload of each case, direct beside server, on each of args.storages."""
    for kind in args.storages:
        with site(kind, work, args) as place:
            for case, source in cases.items():
                measure_case(
                    place, case, source, label=labels[case], work=work, table=table, args=args
                )


def measure_case(
    place: Site, case: str, source: Path, *, label: str, work: Path, table: Table,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """One case on one storage: a fresh gunicorn, then download and upload in both modes."""
    from crunchclient.server.connection import Connection
    from crunchclient.transfer import upload_tree

    server, kind = place.server, place.kind
    server.stop()
    server.start()  # a fresh set of workers: the peak read at the end is this case's
    project = place.project
    inbound, outbound = f"{project}:{case}-in", f"{project}:{case}-out"
    in_folder, out_folder = place.folder(inbound), place.folder(outbound)
    files = sum(1 for path in source.rglob("*") if path.is_file())
    if kind == "local":
        shutil.copytree(source, place.media / in_folder)
    else:
        upload_tree(storage(place.spec), in_folder, source, jobs=args.jobs, quiet=True)
    claim = Connection(server.url, place.token).claim_dataset(
        outbound, holder="bench", lease_seconds=7200
    )
    common = {"storage": place.spec, "jobs": args.jobs, "files": files}
    served = {"url": server.url, "token": place.token}
    dest = work / "served-down" / case
    down = {**common, "op": "down", "folder": in_folder, "local": str(dest)}
    up = {**common, "op": "up", "folder": out_folder, "local": str(source)}
    down_server = {**down, "server": {**served, "slug": inbound}}
    up_server = {**up, "server": {**served, "slug": outbound, "claim": str(claim.id)}}
    target = TARGETS[kind][case]

    def before_down() -> None:
        clear(dest)
        evict(place.media / in_folder if kind == "local" else source, args.cold)

    def before_up() -> None:
        place.empty(out_folder)
        evict(source, args.cold)

    rounds = [(down, before_down), (down_server, before_down), (up, before_up),
              (up_server, before_up)]  # fmt: skip
    seconds, peaks = rounds_of(rounds, args.repeat)
    for what, (direct, through) in (("download", (0, 1)), ("upload", (2, 3))):
        table.add(label, f"{kind} {what}, server mode", seconds[through], seconds[direct],
                  "direct mode", target)  # fmt: skip
    client_served, client_direct = max(peaks[1], peaks[3]), max(peaks[0], peaks[2])
    worker = server.peak_kib()
    for what, peak, base, base_is in (
        ("client (server mode)", client_served, client_direct, "client, direct"),
        ("gunicorn worker", worker, None, ""),
    ):
        table.add_raw(
            label, f"{kind} RSS, {what}", f"{peak / 1024:.0f}MiB",
            "" if base is None else f"{base / 1024:.0f}MiB", base_is, "", f"< {PEAK_MIB}MiB",
            "ok" if peak / 1024 < PEAK_MIB else "MISSED",
        )  # fmt: skip
    clear(dest)
    place.empty(out_folder)
    place.empty(in_folder)


def rounds_of(runs: list[tuple[dict[str, Any], Any]], repeat: int) -> tuple[list[float], list[int]]:
    """The best time and the highest peak (KiB) of each (spec, before) over one untimed
    round and ``repeat`` timed ones, taking them in turn as benchmarks.timing.best_of does."""
    best = [float("inf")] * len(runs)
    peaks = [0] * len(runs)
    for round_ in range(repeat + 1):
        for i, (spec, before) in enumerate(runs):
            before()
            seconds, peak = run_child(spec)
            peaks[i] = max(peaks[i], peak)
            if round_:
                best[i] = min(best[i], seconds)
    return best, peaks


def run_child(spec: dict[str, Any]) -> tuple[float, int]:
    """Run one transfer in a child process; return its seconds and its peak RSS (KiB)."""
    subprocess.run(["sync"], check=True)  # earlier runs' dirty pages, flushed off the clock
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.transfer_server", "--child", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"transfer {spec['op']} failed: {done.stderr.strip()[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["files"] != spec["files"]:
        raise SystemExit(f"transfer {spec['op']}: {answer['files']} of {spec['files']} files")
    return float(answer["seconds"]), int(answer["peak_kib"])


# ---------------------------------------------------------------------------- the child


def storage(spec: dict[str, str]) -> Any:
    """The Django storage of direct transfers, from its spec."""
    if spec["kind"] == "local":
        from django.core.files.storage import FileSystemStorage

        return FileSystemStorage(location=spec["location"])
    from storages.backends.s3 import S3Storage

    return S3Storage(
        bucket_name=spec["bucket"], endpoint_url=spec["endpoint"], region_name="us-east-1",
        access_key="testing", secret_key="testing", file_overwrite=True,
    )  # fmt: skip


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One download or upload, as a worker runs it; its seconds and peak RSS."""
    import django
    from django.conf import settings

    settings.configure(USE_TZ=True, INSTALLED_APPS=[])
    django.setup()
    from crunchclient.server.connection import Connection
    from crunchclient.server.files import ServerBackend
    from crunchclient.transfer import download_tree, upload_tree

    served = spec.get("server")
    target: Any
    if served:
        target = ServerBackend(
            Connection(served["url"], served["token"]), served["slug"], spec["folder"],
            claim=served.get("claim"), jobs=spec["jobs"],
        )  # fmt: skip
    else:
        target = storage(spec["storage"])
    local = Path(spec["local"])
    started = time.perf_counter()
    if spec["op"] == "down":
        sums = download_tree(target, spec["folder"], local, jobs=spec["jobs"], quiet=True)
    else:
        sums, _result = upload_tree(target, spec["folder"], local, jobs=spec["jobs"], quiet=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds, "files": len(sums),
        "peak_kib": vm_hwm(Path("/proc/self/status").read_text()),
    }  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.transfer_server --child SPEC (internal)")
    print(json.dumps(child(json.loads(sys.argv[2]))))
