"""ServerBackend: a dataset's files through the crunch server, for a node that holds no
storage keys (``--transfer server``).

The same StorageBackend as direct transfers, so the flows keep their guarantees: files
written under a partial name then renamed, resumed by size and mtime or MD5 (the
manifest gives both), retried through outages. How the bytes move is the server's
choice, read from the manifest: signed links straight to S3, or the server's own file
and bundle URLs, many small files a tar stream each way.
"""

from __future__ import annotations

import builtins
import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

from crunchclient.exceptions import ClaimLost, TransferError, UnsafePathError
from crunchclient.server.http import Transport, quote_slug
from crunchclient.server.moving import (
    BLOCK,
    TIMEOUT,
    Body,
    Broken,
    Counted,
    Expired,
    Mover,
    new_md5,
)
from crunchclient.server.tarred import TarBody, read_members
from crunchclient.server.wire import SignedLink
from crunchclient.transfer.backends.base import Entry, Outgoing, Place, StorageBackend, keep_mtime
from crunchclient.transfer.hashing import md5_file
from crunchclient.transfer.progress import Progress

logger = logging.getLogger(__name__)

PART_WORKERS = 8  # parts of one large file sent at once to S3
BUNDLED = 1024 * 1024
"""Files smaller than this travel many to a tar stream; larger ones one a request, where
the server can hand the bytes to sendfile and no tar framing is parsed."""


class ServerBackend(StorageBackend):
    """The files of one dataset (``prefix`` is its folder), through the server's API.

    With ``claim`` (a run's), the backend may write; without, it only reads (``crunch
    download``).
    """

    lists_md5 = True

    def __init__(
        self, transport: Transport, dataset: str, prefix: str, *, claim: str | None = None,
        jobs: int = 8,
    ) -> None:  # fmt: skip
        super().__init__(None, jobs)
        self.transport = transport
        self.dataset = dataset
        self.base = f"datasets/{quote_slug(dataset)}/"
        self.prefix = prefix.strip("/")
        self.claim = claim
        self.mover = Mover(transport)
        self.signs: bool | None = None
        self.prepared: dict[str, Entry] = {}
        self.calls = threading.Lock()  # the transport's session is not shared across threads
        self.described = f"the crunch server at {transport.shown!r} (--transfer server)"

    # Names: the flows speak storage names (prefix/rel); the server paths in the dataset.

    def path(self, name: str) -> str:
        if name == self.prefix or not name.startswith(self.prefix + "/"):
            raise UnsafePathError(f"Refusing {name!r}: it is not in the dataset's folder.")
        return name[len(self.prefix) + 1 :]

    def under(self, prefix: str) -> str:
        """The path of ``prefix`` in the dataset: "" for the dataset's folder itself."""
        prefix = prefix.strip("/")
        return "" if prefix == self.prefix else self.path(prefix)

    def headers(self) -> dict[str, str]:
        return {"X-Crunch-Claim": self.claim} if self.claim else {}

    # Listing.

    def manifest(self, *, under: str = "", tidy: bool = False) -> list[Entry]:
        """The files of the dataset (in its folder ``under``), from the server, paths
        relative to the dataset; with tidy (and the claim), half-written files of a killed
        upload are removed."""
        tidy = tidy and self.claim is not None
        query = {"under": under} if under else {}
        if tidy:
            query["tidy"] = "1"
        with self.calls:
            answer = self.transport.expect(
                "GET", self.base + "manifest/" + (f"?{urlencode(query)}" if query else ""),
                headers=self.headers() if tidy else {}, conflict=ClaimLost,
                missing=f"No dataset {self.dataset!r} you may read.",
            )  # fmt: skip
        self.signs = bool(answer.get("links"))
        entries = []
        for item in answer.get("files") or []:
            mtime = item.get("mtime")
            entries.append(
                Entry(
                    rel=str(item["path"]), size=int(item["size"]),
                    mtime_ns=round(mtime * 1e9) if isinstance(mtime, (int, float)) else None,
                    md5=item.get("md5") or None,
                )
            )  # fmt: skip
        return entries

    def list(self, prefix: str, *, tidy: bool = False) -> list[Entry]:
        sub = self.under(prefix)
        if not sub:
            return self.manifest(tidy=tidy)
        start = sub + "/"
        return [
            entry._replace(rel=entry.rel[len(start) :])
            for entry in self.manifest(under=sub)
            if entry.rel.startswith(start)
        ]

    def prepare(self, prefix: str) -> None:
        self.prepared = {entry.rel: entry for entry in self.list(prefix)}

    def stored(self, name: str, rel: str) -> Entry | None:
        return self.prepared.get(rel)

    def stored_md5(self, name: str, entry: Entry) -> str | None:
        return entry.md5

    def matches(self, name: str, stored: Entry, local: str, md5: str) -> bool:
        """By the listed MD5; else (a file a killed upload stored) the server reads it,
        which saves sending it again."""
        if stored.md5 is not None or not self.claim:
            return stored.md5 == md5
        with self.calls:
            answer = self.transport.expect(
                "POST", self.base + "checksums/",
                json={"claim": self.claim, "paths": [self.path(name)]}, conflict=ClaimLost,
            )  # fmt: skip
        return bool(answer.get("md5", {}).get(self.path(name)) == md5)

    def mode(self) -> bool:
        """Whether the server hands out signed links (asks the manifest once)."""
        if self.signs is None:
            self.manifest()
        return bool(self.signs)

    # Downloads.

    def file_url(self, path: str) -> str:
        return self.transport.api + self.base + "files/" + quote(path)

    def links(
        self, read: Sequence[str] = (), write: Sequence[tuple[str, int]] = ()
    ) -> builtins.list[SignedLink]:
        body: dict[str, Any] = {
            "read": list(read), "write": [{"path": p, "size": s} for p, s in write],
        }  # fmt: skip
        if self.claim and write:
            body["claim"] = self.claim
        with self.calls:
            answer = self.transport.expect(
                "POST", self.base + "links/", json=body,
                missing=f"No dataset {self.dataset!r} you may {'write' if write else 'read'}.",
            )  # fmt: skip
        return [SignedLink.from_wire(item) for item in answer.get("links") or []]

    def download(self, name: str, entry: Entry, partial: str, progress: Progress) -> str | None:
        path = self.path(name)
        url = None if not self.mode() else self.links(read=[path])[0].url
        return self._get(path, entry, partial, progress, url)

    def _get(
        self, path: str, entry: Entry, partial: str, progress: Progress, url: str | None
    ) -> str:
        """GET one file into the new file partial: from ``url`` (a signed link, asked
        again when it expired) or the server's file URL; retried from the start."""
        count = Counted(progress)
        links = [url]

        def attempt() -> str:
            signed = links[0] is not None
            target = links[0] or self.file_url(path)
            session = self.mover.session(signed=signed)
            with session.get(target, stream=True, timeout=TIMEOUT) as response:
                try:
                    self.mover.check(response, signed=signed, method="GET", path=path)
                except Expired:
                    links[0] = self.links(read=[path])[0].url
                    raise Broken(f"the link to {path!r} expired") from None
                digest = new_md5()
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(BLOCK):
                        digest.update(chunk)
                        out.write(chunk)
                        count(len(chunk))
            if entry.size is not None and count.bytes != entry.size:
                raise TransferError(
                    f"{path!r} of dataset {self.dataset!r} has {count.bytes} bytes, not the "
                    f"{entry.size} listed: it changed in storage while it was downloaded."
                )
            keep_mtime(partial, entry)
            return str(digest.hexdigest())

        return self.mover.retrying(f"download {path!r}", attempt, count.undo)

    def download_many(
        self, items: Sequence[tuple[str, Entry]], place: Place, progress: Progress
    ) -> None:
        if self.mode():
            links = self.links(read=[self.path(name) for name, _entry in items])
            for (name, entry), link in zip(items, links, strict=True):
                get = functools.partial(
                    self._get, self.path(name), entry, progress=progress, url=link.url
                )
                place(entry, get)
            return
        small = [item for item in items if (item[1].size or 0) < BUNDLED]
        large = [item for item in items if (item[1].size or 0) >= BUNDLED]
        super().download_many(large, place, progress)  # one request each: sendfile
        if len(small) > 1:
            self._bundle_get(small, place, progress)
        else:
            super().download_many(small, place, progress)

    def _bundle_get(
        self, items: Sequence[tuple[str, Entry]], place: Place, progress: Progress
    ) -> None:
        """Many small files in one tar stream; after a break, the rest in a new one."""
        left = {self.path(name): entry for name, entry in items}
        count = Counted(progress)

        def attempt() -> None:
            body = {"paths": list(left)}
            url = self.transport.api + self.base + "bundle/"
            session = self.mover.session(signed=False)
            with session.post(url, json=body, stream=True, timeout=TIMEOUT) as response:
                self.mover.check(response, signed=False, method="POST", path="bundle/")
                for path, data in read_members(response.raw, set(left)):
                    entry = left[path]

                    def write(partial: str, data: Any = data, entry: Entry = entry) -> str:
                        digest = new_md5()
                        with open(partial, "xb") as out:
                            while chunk := data.read(BLOCK):
                                digest.update(chunk)
                                out.write(chunk)
                                count(len(chunk))
                        keep_mtime(partial, entry)
                        return str(digest.hexdigest())

                    place(entry, write)
                    count.bytes = 0  # in place: a retry keeps it
                    del left[path]
            if left:
                raise TransferError(
                    f"The server sent no file {sorted(left)[0]!r} of dataset {self.dataset!r}: "
                    "it was removed from storage while it was downloaded."
                )

        self.mover.retrying("download files", attempt, count.undo)

    # Uploads.

    def upload(self, name: str, local: str, size: int, md5: str | None, progress: Progress) -> str:
        return self.upload_many([Outgoing(name, local, size, md5)], progress)[0]

    def upload_many(self, items: Sequence[Outgoing], progress: Progress) -> builtins.list[str]:
        if not self.claim:
            raise TransferError("Uploads through the server need a claim on the dataset.")
        if self.mode():
            links = self.links(write=[(self.path(item.name), item.size) for item in items])
            return [
                self._put_signed(item, link, progress)
                for item, link in zip(items, links, strict=True)
            ]
        small = [item for item in items if item.size < BUNDLED]
        md5s = {item.name: self._put(item, progress) for item in items if item.size >= BUNDLED}
        if len(small) > 1:
            sent = self._bundle_put(small, progress)
            md5s.update(zip([item.name for item in small], sent, strict=True))
        else:
            md5s.update((item.name, self._put(item, progress)) for item in small)
        return [md5s[item.name] for item in items]

    def _put(self, item: Outgoing, progress: Progress, url: str | None = None) -> str:
        """One PUT of the whole file: to the server's file URL, or to a signed ``url``
        (which must not carry our token); hashed as it is sent. Its MD5."""
        path = self.path(item.name)
        count = Counted(progress)
        digests: builtins.list[Any] = []
        signed = url is not None

        def attempt() -> None:
            digest = new_md5()
            digests[:] = [digest]
            body = Body(item.local, 0, item.size, count, digest)
            try:
                response = self.mover.session(signed=signed).put(
                    url or self.file_url(path), data=body,
                    headers={} if signed else self.headers(), timeout=TIMEOUT,
                )  # fmt: skip
            finally:
                body.close()
            self.mover.check(response, signed=signed, method="PUT", path=path)

        self.mover.retrying(f"upload {path!r}", attempt, count.undo)
        return item.md5 or str(digests[0].hexdigest())

    def _bundle_put(self, items: Sequence[Outgoing], progress: Progress) -> builtins.list[str]:
        count = Counted(progress)
        bodies: builtins.list[TarBody] = []

        def attempt() -> None:
            body = TarBody([(self.path(i.name), i.local, i.size) for i in items], count)
            bodies[:] = [body]
            try:
                response = self.mover.session(signed=False).put(
                    self.transport.api + self.base + "bundle/", data=body,
                    headers={**self.headers(), "Content-Type": "application/x-tar"},
                    timeout=TIMEOUT,
                )  # fmt: skip
            finally:
                body.close()
            self.mover.check(response, signed=False, method="PUT", path="bundle/")

        self.mover.retrying("upload files", attempt, count.undo)
        return [item.md5 or md5 for item, md5 in zip(items, bodies[0].md5s(), strict=True)]

    def _put_signed(self, item: Outgoing, link: SignedLink, progress: Progress) -> str:
        """One PUT to a signed link, or each part to its own and a ``complete`` call."""
        if link.upload_id is None:
            return self._put(item, progress, url=link.url)
        return self._put_parts(item, self.path(item.name), link, progress)

    def _put_parts(self, item: Outgoing, path: str, link: SignedLink, progress: Progress) -> str:
        part_size = link.part_size

        def part(number: int) -> str:
            url = link.parts[number]
            offset = number * part_size
            size = min(part_size, item.size - offset)
            count = Counted(progress)

            def attempt() -> str:
                body = Body(item.local, offset, size, count)
                try:
                    response = self.mover.session(signed=True).put(url, data=body, timeout=TIMEOUT)
                finally:
                    body.close()
                self.mover.check(response, signed=True, method="PUT", path=path)
                return str(response.headers.get("ETag", ""))

            return self.mover.retrying(f"upload part {number + 1} of {path!r}", attempt, count.undo)

        with ThreadPoolExecutor(PART_WORKERS, thread_name_prefix="crunch-part") as pool:
            etags = pool.map(part, range(len(link.parts)))
            md5 = item.md5
            if md5 is None:
                md5 = md5_file(item.local)
            done = list(etags)
        with self.calls:
            self.transport.request(
            "POST", self.base + "complete/",
            json={"claim": self.claim, "path": path, "upload_id": link.upload_id, "etags": done},
            conflict=ClaimLost,
        )  # fmt: skip
        return md5
