"""The results a workflow reports: the JSON object it writes to ``$CRUNCH_RESULTS``
(``.crunch/results.json`` in the dataset's folder), checked once it succeeded and sent with
the Upload Success; the file goes to storage with the other records.

The checks are the server's (crunch.services.result_values) as far as they need no
schema: a bad file fails its dataset here, with a note that says what to fix, and the
server need not be asked. The server checks again and alone knows the project's schema: a
key whose kind changed between datasets is refused there (``ResultsRefused``), and the
dataset fails the same way. Either Fail has the reason ``results``, which is not retried
by default: running the same workflow again would write the same file.

Dates and times are sent as the strings they are; the server types them.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crunch.choices import FailReason, State
from crunch.choices import Stage as StageNumber
from crunch.constants import (
    INT64,
    RESULT_KEY,
    RESULT_KEY_MAX,
    RESULT_RESERVED,
    RESULT_TEXT_BYTES,
    RESULT_TEXT_MAX,
    RESULTS_MAX_BYTES,
    RESULTS_MAX_KEYS,
    RESULTS_RECORD,
)
from crunchclient.exceptions import ClientError, ResultsRefused, StageFailed
from crunchclient.worker.context import RunContext
from crunchclient.worker.failures import Failed, Failure
from crunchclient.worker.stages.base import first_line

logger = logging.getLogger(__name__)

KEY = re.compile(rf"{RESULT_KEY}\Z")
NESTED = '{"lat": .., "lon": ..}'
KINDS = f"a number, a text, true or false, an ISO date or date and time, or {NESTED}"


RESULTS = Failure(FailReason.RESULTS)


class InvalidResultsFile(Failed, ClientError):
    """The workflow's results file is not a flat JSON object crunch can store."""

    failure = RESULTS


class _Constant(ValueError):
    """JSON's NaN, Infinity or -Infinity, which Python's json reads unless told not to."""


class _Twice(ValueError):
    """A key that appears twice in one object."""


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted, control characters escaped, cut short: notes stay one line."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def problem(text: str) -> InvalidResultsFile:
    return InvalidResultsFile(f"{RESULTS_RECORD}: {text}")


def read_results(path: Path) -> dict[str, Any] | None:
    """The results the workflow wrote to ``path``; None when it wrote none (no file).

    InvalidResultsFile, in one line, for a file that is not a flat JSON object of at most
    RESULTS_MAX_KEYS keys and RESULTS_MAX_BYTES bytes. A link is refused, not followed:
    the workflow must not make the client read and send a file outside its folder.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise problem("is a symbolic link; write the file itself.") from None
        raise problem(f"cannot be read ({exc.strerror}).") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise problem("is not a regular file.")
        data = os.read(fd, RESULTS_MAX_BYTES + 1)
        while len(data) <= RESULTS_MAX_BYTES and (more := os.read(fd, RESULTS_MAX_BYTES)):
            data += more
    finally:
        os.close(fd)
    if len(data) > RESULTS_MAX_BYTES:
        raise problem(
            f"larger than {RESULTS_MAX_BYTES // 1024} KiB ({RESULTS_MAX_BYTES:,} bytes); "
            "report fewer or shorter results."
        )
    return parse(data)


def parse(data: bytes) -> dict[str, Any]:
    """The results in ``data`` (a file's bytes), checked; InvalidResultsFile says why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem(f"is not UTF-8 (byte {exc.start + 1} is {data[exc.start]:#04x}).") from None
    try:
        values = json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique)
    except _Constant as exc:
        raise problem(f"holds {exc}, which is no number; report finite numbers only.") from None
    except _Twice as exc:
        raise problem(f"{exc}.") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise problem(f"is not JSON ({exc.msg} at {where}).") from None
    except ValueError as exc:  # an integer of more digits than Python reads
        raise problem(f"is not JSON crunch reads ({exc}).") from None
    except RecursionError:
        raise problem(f"is nested too deeply; only {NESTED} may be nested.") from None
    return check(values)


def refuse_constant(name: str) -> Any:
    raise _Constant(name)


def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict; a key that appears twice is an error, not the last wins."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise _Twice(f"key {shown(name)} appears twice")
        found[name] = value
    return found


def check(values: Any) -> dict[str, Any]:
    """``values`` if they are results crunch stores; else InvalidResultsFile, the first
    problem named."""
    if not isinstance(values, dict):
        kind = "null" if values is None else type(values).__name__
        raise problem(f'is a {kind}, not an object of keys and values ({{"words": 10, ...}}).')
    if len(values) > RESULTS_MAX_KEYS:
        raise problem(f"has {len(values):,} keys; at most {RESULTS_MAX_KEYS} are allowed.")
    for name, value in values.items():
        check_key(name)
        check_value(name, value)
    return values


def check_key(name: str) -> None:
    if not KEY.match(name):
        raise problem(
            f"key {shown(name)} is not an identifier (a letter or '_', then letters, digits "
            f"or '_', at most {RESULT_KEY_MAX} characters)."
        )
    if name in RESULT_RESERVED:
        raise problem(f"key {name!r} is reserved ({', '.join(sorted(RESULT_RESERVED))}).")


def check_value(name: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise problem(f"{name!r} is {value}, which does not fit in 64 bits.")
        return
    if isinstance(value, float):
        if not math.isfinite(value):  # 1e999 is read as inf
            raise problem(f"{name!r} is {value!r}; report finite numbers only.")
        return
    if isinstance(value, str):
        check_text(name, value)
        return
    if isinstance(value, Mapping):
        check_place(name, value)
        return
    what = "null; leave the key out instead" if value is None else f"a {type(value).__name__}"
    raise problem(f"{name!r} is {what}" + ("." if value is None else f"; report {KINDS}."))


def check_text(name: str, value: str) -> None:
    if len(value) > RESULT_TEXT_MAX:
        raise problem(
            f"{name!r} is a text of {len(value):,} characters; at most {RESULT_TEXT_MAX:,}."
        )
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise problem(f"{name!r} holds the control character {char!r}.")
    if len(value.encode()) > RESULT_TEXT_BYTES:
        raise problem(f"{name!r} is a text of more than {RESULT_TEXT_BYTES:,} bytes in UTF-8.")


def check_place(name: str, value: Mapping[str, Any]) -> None:
    if set(value) != {"lat", "lon"}:
        raise problem(f"{name!r} is an object; only {NESTED} may be nested.")
    for part, bound in (("lat", 90), ("lon", 180)):
        degrees = value[part]
        if isinstance(degrees, bool) or not isinstance(degrees, int | float):
            raise problem(f"{name!r}'s {part} is not a number.")
        if not -bound <= degrees <= bound:
            raise problem(f"{name!r}'s {part} {degrees!r} is not between {-bound} and {bound}.")


def clear_stale(path: Path) -> bool:
    """Remove the results file an earlier run left (downloaded with the records, or in the
    folder), so that only what this run writes is reported; whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def fail_refused(context: RunContext, refused: ResultsRefused) -> StageFailed:
    """Record the Upload Fail of results the server refused (the dataset's run is still
    held: the refused Upload Success was not recorded); the StageFailed to raise."""
    note = str(refused)
    logger.debug("%s: the server refused the results: %s", context.slug, note)
    answer = context.report(StageNumber.UPLOAD, State.FAIL, note, failure=RESULTS)
    retrying = answer.retrying
    return StageFailed(
        f"Dataset {context.slug!r} failed at Upload"
        f"{' (it will be retried)' if retrying else ''}: {first_line(note)}",
        retrying=retrying, retry_at=answer.dataset_retry_at,
    )  # fmt: skip
