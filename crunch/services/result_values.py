"""Check the results a workflow reports, whatever the client checked before: never trust it.

A results object is flat: at most 200 keys, each an identifier, and at most 64 KiB as
compact JSON. A value is an integer (64-bit), a finite float, a boolean, a text of at most
1,000 characters with no control character, an ISO date (``2024-05-01``) or date and time
(``2024-05-01T12:00:00Z``; without an offset it is UTC), or ``{"lat": .., "lon": ..}`` in
degrees. A text that reads as an ISO date is a date: the kind comes from the value.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crunch.choices import AttributeKind
from crunch.constants import INT64, RESULT_KEY, RESULT_RESERVED, RESULT_TEXT_BYTES
from crunch.constants import RESULTS_MAX_BYTES as MAX_BYTES
from crunch.constants import RESULTS_MAX_KEYS as MAX_KEYS
from crunch.exceptions import InvalidResults
from crunch.models.results import KEY_MAX, TEXT_MAX, LatLon

TEXT_BYTES = RESULT_TEXT_BYTES
EXACT_FLOAT = 2**53  # integers up to this size are floats without loss
KEY = re.compile(rf"{RESULT_KEY}\Z")
RESERVED = RESULT_RESERVED
"""Names of the table's own columns (exports, sorts): no result may take them."""
DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?\Z")

ResultValue = (
    int | float | bool | str | datetime.date | datetime.datetime | LatLon | Mapping[str, float]
)
"""What a result may be given as: JSON's values, or Python's dates and LatLon."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Typed:
    """A checked value and the kind it gives its key."""

    kind: AttributeKind
    value: Any


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted, cut short: messages stay one readable line."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def check_key(name: object) -> str:
    """The key if it is an identifier a column may take; else why not."""
    if not isinstance(name, str) or not KEY.match(name):
        what = shown(name) if isinstance(name, str) else type(name).__name__
        raise ValueError(
            f"the key {what} is not an identifier (a letter or '_', then letters, digits "
            f"or '_', at most {KEY_MAX} characters)"
        )
    if name in RESERVED:
        raise ValueError(f"the key {name!r} is reserved ({', '.join(sorted(RESERVED))})")
    return name


def check_text(name: str, value: str) -> str:
    if len(value) > TEXT_MAX:
        raise ValueError(f"{name!r} is a text of {len(value)} characters; at most {TEXT_MAX}")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"{name!r} holds the control character {char!r}")
    if len(value.encode()) > TEXT_BYTES:
        raise ValueError(f"{name!r} is a text of more than {TEXT_BYTES} bytes in UTF-8")
    return value


def number(name: str, part: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name!r}'s {part} is not a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name!r}'s {part} {value!r} is not between {low:g} and {high:g}")
    return float(value)


def lat_lon(name: str, value: Mapping[Any, Any]) -> LatLon:
    if set(value) != {"lat", "lon"}:
        raise ValueError(f'{name!r} is an object; only {{"lat": .., "lon": ..}} may be nested')
    return LatLon(
        number(name, "lat", value["lat"], -90, 90), number(name, "lon", value["lon"], -180, 180)
    )


def moment(name: str, value: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name!r} {shown(value)} is not a valid date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def typed_text(name: str, value: str) -> Typed:
    """A date, a date and time, or a text: what the string reads as."""
    if DATE.match(value):
        try:
            return Typed(kind=AttributeKind.DATE, value=datetime.date.fromisoformat(value))
        except ValueError:
            raise ValueError(f"{name!r} {value!r} is not a valid date") from None
    if DATETIME.match(value):
        return Typed(kind=AttributeKind.DATETIME, value=moment(name, value))
    return Typed(kind=AttributeKind.TEXT, value=check_text(name, value))


def typed(name: str, value: object) -> Typed:  # noqa: PLR0911 (one return a kind)
    """The kind and Python value of one result; ValueError says what is wrong."""
    if isinstance(value, bool):
        return Typed(kind=AttributeKind.BOOLEAN, value=value)
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"{name!r} {value} does not fit in 64 bits")
        return Typed(kind=AttributeKind.INTEGER, value=value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name!r} is {value!r}; report finite numbers only")
        return Typed(kind=AttributeKind.FLOAT, value=value)
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return Typed(kind=AttributeKind.DATETIME, value=aware)
    if isinstance(value, datetime.date):
        return Typed(kind=AttributeKind.DATE, value=value)
    if isinstance(value, LatLon):
        return Typed(kind=AttributeKind.LATLONG, value=lat_lon(name, value._asdict()))
    if isinstance(value, Mapping):
        return Typed(kind=AttributeKind.LATLONG, value=lat_lon(name, value))
    if isinstance(value, str):
        return typed_text(name, value)
    if value is None:
        raise ValueError(f"{name!r} is null; leave the key out instead")
    raise ValueError(
        f"{name!r} is a {type(value).__name__}; report a number, a text, a boolean, an ISO "
        'date or date and time, or {"lat": .., "lon": ..}'
    )


def json_size(values: Mapping[Any, Any]) -> int:
    """Bytes of ``values`` as compact JSON (dates as ISO text)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime.date):
            return value.isoformat()
        return str(value)

    encoded = json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=plain)
    return len(encoded.encode())


def check_results(values: Mapping[Any, Any], *, dataset: str) -> dict[str, Typed]:
    """Each key's kind and value; InvalidResults names the dataset and the first problem."""
    where = f"Results of dataset {dataset!r}"
    if not isinstance(values, Mapping):
        raise InvalidResults(
            f"{where}: a {type(values).__name__}, not an object of keys and values."
        )
    if len(values) > MAX_KEYS:
        raise InvalidResults(f"{where}: {len(values)} keys; at most {MAX_KEYS} are allowed.")
    size = json_size(values)
    if size > MAX_BYTES:
        raise InvalidResults(f"{where}: {size:,} bytes as JSON; at most {MAX_BYTES:,} are allowed.")
    checked = {}
    for name, value in values.items():
        try:
            checked[check_key(name)] = typed(name, value)
        except ValueError as exc:
            raise InvalidResults(f"{where}: {exc}.") from None
    return checked
