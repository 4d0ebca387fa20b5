"""Request parsers that hold the body to ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

DRF's JSON and form parsers read the whole stream, so Django's limit, checked only when
``request.body`` is read, never applies to them. These read at most the limit and raise
RequestDataTooBig, which crunch.api.exceptions answers with a JSON 413. Name them in
``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]`` (Django's multipart parser checks the limit).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_BIG = "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."


def limited(stream: IO[bytes] | None, parser_context: Mapping[str, Any] | None) -> IO[bytes] | None:
    """The body as a stream of at most the limit's bytes; RequestDataTooBig past it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if stream is None or limit is None:
        return stream
    request = (parser_context or {}).get("request")
    meta = getattr(request, "META", {})
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise RequestDataTooBig(TOO_BIG)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise RequestDataTooBig(TOO_BIG)
    return io.BytesIO(data)


class LimitedParser(parsers.BaseParser):
    """Parses the body read through ``limited``; mixed in before DRF's parser. A JSON body
    nested past the interpreter's recursion limit is a 400, not a 500."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        body = limited(stream, parser_context)
        try:
            return super().parse(body, media_type, parser_context)  # type: ignore[arg-type]
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


class JSONParser(LimitedParser, parsers.JSONParser):
    pass


class FormParser(LimitedParser, parsers.FormParser):
    pass
