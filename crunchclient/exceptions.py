"""Errors of the compute client; each carries the exit code the commands return."""

from __future__ import annotations


class ClientError(Exception):
    """The client could not do its work. Do not raise directly."""

    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class TransferError(ClientError):
    """A file could not be copied between storage and the working directory."""

    exit_code = 5


class UnsafePathError(TransferError):
    """A path would escape the dataset folder."""

    exit_code = 6
