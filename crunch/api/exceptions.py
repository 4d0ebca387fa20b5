"""HTTP answers for our errors: every error is JSON with a ``detail`` message."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from crunch.exceptions import ClaimConflict, CrunchError, InvalidTransition, LeaseExpired


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


API_ERRORS: dict[type[CrunchError], type[APIException]] = {
    LeaseExpired: ClaimNotHeld,
    ClaimConflict: ClaimedElsewhere,
    InvalidTransition: Conflict,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Translate CrunchError to 409s and give 400s a one-line ``detail`` beside field errors."""
    for error, api_error in API_ERRORS.items():
        if isinstance(exc, error):
            exc = api_error(str(exc))
            break
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
