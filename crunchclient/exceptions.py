"""Errors of the compute client; each carries the exit code the commands return.

The exit-code table (``EXIT_CODES``) is shown in the ``--help`` epilog of every command.
"""

from __future__ import annotations

EXIT_CODES: list[tuple[int, str]] = [(0, "success (or nothing pending)"), (1, "unexpected error")]
"""(code, meaning) of each error below, in the order they are declared."""


class ClientError(Exception):
    """The client could not do its work. Do not raise directly."""

    exit_code: int = 1

    def __init_subclass__(cls, exit_code: int = 0, meaning: str = "", **kwargs: object) -> None:
        """``class E(ClientError, exit_code=N, meaning="...")``: E's code, in EXIT_CODES.

        Every code is declared here, even those of errors only ``crunch submit`` raises:
        ``--help`` imports this module alone, and its table must list them all.
        """
        super().__init_subclass__(**kwargs)
        if exit_code:
            cls.exit_code = exit_code
        if exit_code and meaning:  # a second class with the same code adds no second row
            EXIT_CODES.append((exit_code, meaning))

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ConfigurationError(
    ClientError,
    exit_code=2,
    meaning="bad or missing configuration: URL, token, storage settings, options",
):
    """The client's settings are missing or invalid (URL, token, storage settings, options)."""


class ServerError(
    ClientError,
    exit_code=3,
    meaning="server unreachable after retrying, or it rejected the request",
):
    """The crunch server could not be reached or refused the request."""


class AuthenticationFailed(
    ServerError,
    exit_code=4,
    meaning="the server refused the token (invalid or expired) or its role does not allow the call",
):
    """The server refused the token."""


class AccessRemoved(AuthenticationFailed):
    """The token's role on the project of a dataset it held was removed while it worked."""


class NotAllowed(AuthenticationFailed):
    """The token is valid, but its role does not allow this call (HTTP 403)."""


class ProjectPaused(ServerError):
    """The project is paused: it hands out nothing until a maintainer resumes it (409)."""


class TransferError(
    ClientError, exit_code=5, meaning="a file could not be copied to or from storage"
):
    """A file could not be copied between storage and the working directory."""


class InputMissing(TransferError):
    """The dataset's folder in storage is missing or empty: its Fail's reason is
    input-missing, which the default retry policy does not retry."""


class UnsafePathError(
    TransferError, exit_code=6, meaning="a path in storage would escape the working directory"
):
    """A path would escape the dataset folder."""


class NotFound(ServerError, exit_code=7, meaning="no such dataset or project"):
    """The server has no such dataset or project."""


class ClaimConflict(ServerError, exit_code=8, meaning="another client holds the dataset"):
    """Another client holds the dataset."""


class ClaimLost(
    ServerError, exit_code=9, meaning="our claim expired or was released while we worked"
):
    """The server no longer holds our claim: its lease expired or it was released."""


class ResultsRefused(ServerError):
    """The server refused the results an Upload Success carried (400): the project's schema
    fixes another kind for a key, or a value is out of bounds. The dataset fails (reason
    ``results``)."""


class StageFailed(
    ClientError,
    exit_code=10,
    meaning="a dataset failed (for loop: at least one did, retried or not)",
):
    """A stage reported Fail; the dataset was not completed."""

    def __init__(
        self, message: str | None = None, *, retrying: bool = False, exit_code: int | None = None,
        retry_at: str = "",
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.retrying = retrying
        """The server put the dataset back to pending: it has attempts left."""
        self.retry_at = retry_at
        """When it may be claimed again (ISO 8601, from the server), if it said."""
        if exit_code is not None:
            self.exit_code = exit_code  # the cause's, when it has its own (UnsafePathError)


class SchedulerError(
    ClientError,
    exit_code=11,
    meaning="crunch submit: the scheduler refused a command, or the job array could not work",
):
    """The batch scheduler refused a command (its own message follows)."""


class SubmitError(ClientError, exit_code=11):
    """The job array cannot do its work (e.g. its tasks end without finishing datasets)."""


class Interrupted(
    ClientError, exit_code=130, meaning="stopped by SIGTERM/SIGINT; the dataset was released"
):
    """A signal stopped the client; the current dataset was released."""


def exit_codes_help() -> str:
    """The exit-code table as the ``--help`` epilog shows it."""
    lines = ["exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)
