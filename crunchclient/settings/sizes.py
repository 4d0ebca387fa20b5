"""Memory sizes as the options give them (8g, 512m, 16GiB; bare: bytes), in bytes: what
``--memory``/``--mem-per-slot`` limit, what a claim announces, what ``crunch submit --mem``
asks of the scheduler."""

from __future__ import annotations

import re

from crunchclient.exceptions import ConfigurationError

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE = re.compile(r"^([1-9][0-9]*)([kmgt]?)i?b?$", re.IGNORECASE)


def memory_bytes(size: str) -> int:
    """A size as the container runtimes read it (8g, 512m, 16GiB; bare: bytes), in bytes."""
    match = SIZE.match(size.strip())
    if not match:
        raise ConfigurationError(f"{size!r} is not a memory size: use e.g. 512m or 8g.")
    return int(match[1]) * UNITS[match[2].lower()]
