"""Errors of the compute client; each carries the exit code the commands return.

The exit-code table (``EXIT_CODES``) is shown in the ``--help`` epilog of every command.
"""

from __future__ import annotations


class ClientError(Exception):
    """The client could not do its work. Do not raise directly."""

    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ConfigurationError(ClientError):
    """The client's settings are missing or invalid (URL, token, storage settings, options)."""

    exit_code = 2


class ServerError(ClientError):
    """The crunch server could not be reached or refused the request."""

    exit_code = 3


class AuthenticationFailed(ServerError):
    """The server refused the token."""

    exit_code = 4


class TransferError(ClientError):
    """A file could not be copied between storage and the working directory."""

    exit_code = 5


class UnsafePathError(TransferError):
    """A path would escape the dataset folder."""

    exit_code = 6


class NotFound(ServerError):
    """The server has no such dataset or project."""

    exit_code = 7


class ClaimConflict(ServerError):
    """Another client holds the dataset."""

    exit_code = 8


class ClaimLost(ServerError):
    """The server no longer holds our claim: its lease expired or it was released."""

    exit_code = 9


class StageFailed(ClientError):
    """A stage reported Fail; the dataset was not completed."""

    exit_code = 10

    def __init__(
        self, message: str | None = None, *, retrying: bool = False, exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.retrying = retrying
        """The server put the dataset back to pending: it has attempts left."""
        if exit_code is not None:
            self.exit_code = exit_code  # the cause's, when it has its own (UnsafePathError)


class Interrupted(ClientError):
    """A signal stopped the client; the current dataset was released."""

    exit_code = 130


EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success (or nothing pending)"),
    (1, "unexpected error"),
    (
        ConfigurationError.exit_code,
        "bad or missing configuration: URL, token, storage settings, options",
    ),
    (ServerError.exit_code, "server unreachable after retrying, or it rejected the request"),
    (AuthenticationFailed.exit_code, "the server refused the token"),
    (TransferError.exit_code, "a file could not be copied to or from storage"),
    (UnsafePathError.exit_code, "a path in storage would escape the working directory"),
    (NotFound.exit_code, "no such dataset or project"),
    (ClaimConflict.exit_code, "another client holds the dataset"),
    (ClaimLost.exit_code, "our claim expired or was released while we worked"),
    (StageFailed.exit_code, "a dataset failed (for loop: at least one did)"),
    (Interrupted.exit_code, "stopped by SIGTERM/SIGINT; the dataset was released"),
)


def exit_codes_help() -> str:
    """The exit-code table as the ``--help`` epilog shows it."""
    lines = ["exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)
