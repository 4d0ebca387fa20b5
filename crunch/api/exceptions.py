"""HTTP answers for our errors: every error is JSON with a ``detail`` message."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import DataError
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from crunch.exceptions import (
    ClaimConflict,
    CrunchError,
    InvalidTransition,
    LeaseExpired,
    ProjectPaused,
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the dataset's current state."
    default_code = "conflict"


class ClaimNotHeld(Conflict):
    default_detail = "The claim is no longer held: its lease expired or it was released."
    default_code = "claim_not_held"


class ClaimedElsewhere(Conflict):
    default_detail = "The dataset is claimed by another client."
    default_code = "claimed_elsewhere"


class Paused(Conflict):
    default_detail = "The project is paused: it hands out no dataset until it is resumed."
    default_code = "project_paused"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class InvalidValue(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The database refused a value of the request."
    default_code = "invalid"


API_ERRORS: dict[type[CrunchError], type[APIException]] = {
    ProjectPaused: Paused,
    LeaseExpired: ClaimNotHeld,
    ClaimConflict: ClaimedElsewhere,
    InvalidTransition: Conflict,
}


def has_nul(request: Any) -> bool:
    """Whether the URL's path or query holds a NUL, which no row of PostgreSQL can match."""
    if request is None:
        return False
    try:
        query = request.GET.lists()
    except TooManyFieldsSent:  # a query past DATA_UPLOAD_MAX_NUMBER_FIELDS
        query = []
    return "\x00" in unquote(request.path) or any(
        "\x00" in key or any("\x00" in value for value in values) for key, values in query
    )


def hostile_input_error(  # noqa: PLR0911 (one return a kind of input)
    exc: Exception, request: Any
) -> APIException | None:
    """The 4xx for input no serializer saw: bodies too large, too deep or of too many
    fields, NUL in URLs. Django's own answer to the first ones would be an HTML page."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(
            "The request body is larger than the server accepts "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE); send less per request."
        )
    if isinstance(exc, TooManyFieldsSent):
        return ParseError(
            f"The request has more fields than the server accepts "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}, DATA_UPLOAD_MAX_NUMBER_FIELDS); "
            "send JSON, or fewer fields per request."
        )
    if isinstance(exc, TooManyFilesSent):
        return ParseError(
            f"The request has more files than the server accepts "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FILES}, DATA_UPLOAD_MAX_NUMBER_FILES); "
            "send fewer files per request."
        )
    if isinstance(exc, RecursionError):
        return ParseError("The JSON body is nested too deeply; flatten it.")
    if isinstance(exc, (ValueError, DataError)) and has_nul(request):
        return NotFound("No such object: the URL holds a NUL character.")
    if isinstance(exc, OverflowError):  # SQLite binds no integer past 64 bits
        if request is not None and request.method in ("GET", "HEAD"):
            return NotFound("No such object: a number in the URL is larger than any id.")
        return InvalidValue("A number in the request is larger than the database holds.")
    if isinstance(exc, DataError):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return InvalidValue(f"The database refused a value: {first_line}")
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Translate CrunchError to 409s and give 400s a one-line ``detail`` beside field errors."""
    for error, api_error in API_ERRORS.items():
        if isinstance(exc, error):
            exc = api_error(str(exc))
            break
    else:
        exc = hostile_input_error(exc, context.get("request")) or exc
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        errors = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        response.data = {"detail": summarize(errors), **errors}
    elif response is not None and isinstance(exc, APIException):
        response.data.setdefault(
            "code", exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        )
    return response


def summarize(errors: dict[str, Any]) -> str:
    """One line naming each field and its first problem."""
    parts = []
    for field, problems in errors.items():
        first = problems[0] if isinstance(problems, list) and problems else problems
        parts.append(f"{field}: {first}" if field != "non_field_errors" else str(first))
    return "Invalid input. " + "; ".join(parts)


def answer_of(exc: Exception, request: Any = None) -> tuple[int, str] | None:
    """The code and one-line detail ``exc`` would answer alone: a batch's refused item."""
    for error, api_error in API_ERRORS.items():
        if isinstance(exc, error):
            exc = api_error(str(exc))
            break
    else:
        exc = hostile_input_error(exc, request) or exc
    if isinstance(exc, ValidationError):
        detail = exc.detail
        return exc.status_code, summarize(
            detail if isinstance(detail, dict) else {"non_field_errors": detail}
        )
    if isinstance(exc, APIException):
        return exc.status_code, str(exc.detail)
    return None
