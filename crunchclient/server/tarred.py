"""Many small files as one tar stream, each way: one request instead of one per file.

``TarBody`` is an upload's body, built as it is sent (each file read once, hashed on
the way), with its size known up front for Content-Length. ``read_members`` reads a
download's stream member by member, refusing any the request did not ask for.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Generator
from typing import IO, Any

from crunchclient.exceptions import TransferError
from crunchclient.server.moving import new_md5

BLOCK = tarfile.BLOCKSIZE


class TarBody:
    """The files [(path in the tar, local file, size)] as a tar stream to read()."""

    def __init__(self, files: list[tuple[str, str, int]], counted: Callable[[int], None]) -> None:
        self.files = files
        self.counted = counted
        self.headers = []
        for path, _local, size in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode = size, 0o644
            self.headers.append(info.tobuf(format=tarfile.PAX_FORMAT))
        self.size = (
            sum(
                len(header) + size + (-size % BLOCK)
                for header, (_p, _l, size) in zip(self.headers, files, strict=True)
            )
            + 2 * BLOCK
        )
        self.digests = [new_md5() for _ in files]
        self.pieces = self._pieces()
        self.buffer = b""
        self.handle: IO[bytes] | None = None

    def __len__(self) -> int:
        return self.size

    def _pieces(self) -> Generator[bytes, None, None]:
        for header, (path, local, size), digest in zip(
            self.headers, self.files, self.digests, strict=True
        ):
            yield header
            with open(local, "rb") as self.handle:
                left = size
                while left > 0:
                    data = self.handle.read(min(1024 * 1024, left))
                    if not data:
                        raise TransferError(f"{path!r} shrank while it was sent.")
                    digest.update(data)
                    self.counted(len(data))
                    left -= len(data)
                    yield data
            yield bytes(-size % BLOCK)
        yield bytes(2 * BLOCK)

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            piece = next(self.pieces, None)
            if piece is None:
                break
            self.buffer += piece
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def md5s(self) -> list[str]:
        return [digest.hexdigest() for digest in self.digests]

    def close(self) -> None:
        self.pieces.close()


def read_members(stream: Any, wanted: set[str]) -> Generator[tuple[str, IO[bytes]], None, None]:
    """(path, readable bytes) of each regular file of the tar stream; TransferError for a
    member that is not one of ``wanted`` or not a regular file."""
    with tarfile.open(fileobj=stream, mode="r|", bufsize=1024 * 1024) as archive:  # cut: ReadError
        for member in archive:
            if not member.isreg() or member.name not in wanted:
                raise TransferError(
                    f"Refusing {member.name[:200]!r} from the server: a file not asked for."
                )
            data = archive.extractfile(member)
            assert data is not None  # a regular file
            yield member.name, data
