"""Bytes over HTTP for ``ServerBackend``: one session a thread, retries through outages,
bodies read in large blocks and hashed as they are sent.

A byte transfer is retried like every API call (connection errors, timeouts, 5xx) until
``retry_for`` runs out, from the start of the file: what was counted is taken back.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from crunchclient.exceptions import ClaimLost, TransferError
from crunchclient.server.http import Transport, backoff, masked
from crunchclient.server.replies import decoded

logger = logging.getLogger(__name__)

BLOCK = 1024 * 1024  # bytes read from a body or an answer at once
TIMEOUT = 60.0  # seconds without a byte before a transfer counts as broken
T = TypeVar("T")

TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,  # a stream read as it comes (tar bundles) that broke
    tarfile.ReadError,  # a tar stream cut short
)


class Broken(Exception):
    """A transfer that may succeed when tried again: a 5xx, a cut stream."""


class Expired(Exception):
    """A signed link that no longer works (S3 answers 403): ask for a new one."""


class _LargeBlocks(HTTPAdapter):
    """Sends a file body in 1 MiB blocks (urllib3's default is 16 KiB)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = BLOCK
        super().init_poolmanager(*args, **kwargs)


class Mover:
    """Per-thread HTTP sessions for bytes: one authenticated for the server's own file
    URLs, one bare for signed links (which must not carry our token to S3)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.local = threading.local()

    def session(self, *, signed: bool) -> requests.Session:
        attribute = "bare" if signed else "server"
        session: requests.Session | None = getattr(self.local, attribute, None)
        if session is None:
            session = requests.Session()
            adapter = _LargeBlocks(pool_connections=2, pool_maxsize=2)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            if signed:
                session.trust_env = True  # proxies and CA bundle from the environment
            else:
                # The transport's headers (token, agent), proxies and CA bundle.
                session.headers.update(self.transport.session.headers)
                session.proxies.update(self.transport.session.proxies)
                session.verify = self.transport.session.verify
                session.trust_env = False
            setattr(self.local, attribute, session)
        return session

    def retrying(self, what: str, attempt: Callable[[], T], undo: Callable[[], None]) -> T:
        """``attempt()`` again after each transient failure (``undo()`` first) until
        retry_for runs out; TransferError then."""
        deadline = time.monotonic() + self.transport.retry_for
        tries = 0
        while True:
            try:
                return attempt()
            except (*TRANSIENT, Broken) as exc:
                undo()
                tries += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransferError(
                        f"Cannot {what} through {self.transport.shown!r} "
                        f"({type(exc).__name__}: {str(exc)[:200]}) after retrying for "
                        f"{self.transport.retry_for:g}s."
                    ) from exc
                pause = backoff(tries)
                logger.warning("Cannot %s (%s); retrying in %.1fs", what, type(exc).__name__, pause)
                time.sleep(min(pause, left))

    def check(self, response: requests.Response, *, signed: bool, method: str, path: str) -> None:
        """Raise for a failed answer: Broken (retry), Expired (new link), else our error."""
        code = response.status_code
        if code < 300:
            return
        if code >= 500 or code == 429:
            raise Broken(f"HTTP {code}")
        if signed:
            if code == 403:
                raise Expired(response.text[:200])
            raise TransferError(
                f"The storage refused {method} of {path!r} (HTTP {code}: {response.text[:200]})."
            )
        self.transport.answer(
            response, decoded(response), method=method, path=path, missing=None,
            conflict=ClaimLost, claim=None, project=None,
        )  # fmt: skip
        raise TransferError(f"Unexpected HTTP {code} on {method} {masked(response.url)!r}.")


class Counted:
    """The bytes of one transfer, passed on to its progress as they move and taken back
    (``undo``) when it starts again."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.bytes = 0

    def __call__(self, size: int) -> None:
        self.bytes += size
        self.progress.advance(bytes=size)

    def undo(self) -> None:
        self.progress.advance(bytes=-self.bytes)
        self.bytes = 0


class Body:
    """A file (or a range of one) as a request body: read in large blocks, counted as it
    goes, hashed when ``digest`` is given; ``len()`` makes requests send Content-Length."""

    def __init__(
        self, path: str, offset: int, size: int, counted: Callable[[int], None],
        digest: Any = None,
    ) -> None:  # fmt: skip
        self.handle: IO[bytes] = open(path, "rb")
        self.handle.seek(offset)
        self.left = size
        self.size = size
        self.counted = counted
        self.digest = digest

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size) if size > 0 else b""
        if size > 0 and not data:
            raise TransferError(f"{self.handle.name!r} shrank while it was sent.")
        self.left -= len(data)
        if self.digest is not None:
            self.digest.update(data)
        self.counted(len(data))
        return data

    def close(self) -> None:
        self.handle.close()


def new_md5() -> Any:
    return hashlib.md5(usedforsecurity=False)
