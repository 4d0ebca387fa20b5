"""The errors our services raise; the API turns them into HTTP answers."""

from __future__ import annotations


class CrunchError(Exception):
    """Something went wrong in crunch. Do not raise directly."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ClaimConflict(CrunchError):
    """The dataset is claimed by another client."""


class LeaseExpired(CrunchError):
    """The claim is no longer held: its lease expired or it was released."""


class InvalidTransition(CrunchError):
    """The dataset cannot move to that state from its current one."""


class NotAllowed(CrunchError):
    """The user's roles do not allow this on the dataset's project."""


class ProjectPaused(CrunchError):
    """The project is paused: it hands out no dataset until a maintainer resumes it."""


class InvalidResults(CrunchError):
    """The results are refused: a key, a value or their kind does not fit."""


class InvalidFilter(CrunchError):
    """A filter, sort or column of results names an unknown key or a value of the wrong kind."""
