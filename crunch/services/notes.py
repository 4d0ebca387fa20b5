"""Notes a worker sends, held to ``CRUNCH_NOTE_MAX_BYTES`` when they are recorded.

A note is cut rather than refused: a failing run must still report its failure, and
what a workflow printed last (the end of its stderr) is what says why it failed, so the
first and last halves are kept with a line saying how much was cut between them.
"""

from __future__ import annotations

from crunch.conf import crunch_settings

MARKER_ROOM = 48
"""Bytes kept free for the marker, whose longest is 47: ``[... 9,223,372,036,854,775,807 ...``"""


def marker(cut: int) -> str:
    return f"\n[... {cut:,} bytes cut ...]\n"


def cut_note(text: str, limit: int | None = None) -> str:
    """``text`` if its UTF-8 fits ``limit`` bytes (CRUNCH_NOTE_MAX_BYTES), else its head
    and tail around ``marker``, cut between whole characters: at most ``limit`` bytes."""
    limit = crunch_settings.NOTE_MAX_BYTES if limit is None else limit
    if len(text) * 4 <= limit:  # no character is longer than 4 bytes: no need to encode
        return text
    # surrogatepass: JSON may carry a lone surrogate (\ud800), which is kept as it came.
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    room = max(limit - MARKER_ROOM, 0)
    head, tail = room // 2, len(data) - (room - room // 2)
    while head > 0 and data[head] & 0xC0 == 0x80:  # not inside a character
        head -= 1
    while tail < len(data) and data[tail] & 0xC0 == 0x80:
        tail += 1
    first, last = (part.decode("utf-8", "surrogatepass") for part in (data[:head], data[tail:]))
    return first + marker(tail - head) + last
