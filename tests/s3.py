"""S3 for tests and benchmarks: moto's server on 127.0.0.1 and an S3Storage pointing at it.

Its fixtures (moto_endpoint, s3_storage) are loaded for every test by tests/conftest.py;
use ``moto_subprocess()`` where the server must not share the client's GIL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto server did not start on port {port}")


@contextmanager
def moto_subprocess() -> Iterator[str]:
    """Run moto's server in its own process; yield its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def make_s3_storage(endpoint: str, bucket: str | None = None, **options: Any) -> Any:
    """Create a bucket on the endpoint and return an S3Storage for it."""
    import boto3
    from storages.backends.s3 import S3Storage

    bucket = bucket or f"crunch-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return S3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint,
        region_name="us-east-1",
        access_key="testing",
        secret_key="testing",
        file_overwrite=True,
        **options,
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread on a free port of 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    for name, value in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An S3Storage on a fresh bucket of the moto server."""
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return make_s3_storage(moto_endpoint)
