"""What the commands print, made safe for a terminal: ``printable()`` and where it applies.

Names, notes, file names and error details come from the server (and so from any worker
or maintainer). A terminal obeys the control characters in them: ``ESC ]8;;URL BEL``
makes a hidden link, ``ESC [2J`` clears the screen, ``CR`` overwrites a line. So every
line a command writes goes through ``printable()``: its output streams (``Output``),
its log lines (``Formatter``), and rich markup is escaped where rich renders a value.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TextIO, cast

from django.core.management.base import OutputWrapper

CONTROL = re.compile(
    r"""
    (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?       # CSI: colours, cursor moves
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])                     # OSC (links, titles), DCS...
    [^\x00-\x1f\x7f-\x9f]* (?:\x07|\x1b\\|\x9c)?                #   ...to BEL or ST, if any
  | \x1b [\x20-\x2f]* [\x30-\x7e]?                              # other escape sequences
  | [\x00-\x08\x0b-\x1f\x7f-\x9f]                               # C0 but TAB and LF, DEL, C1
    """,
    re.VERBOSE,
)
LINE_BREAKS = re.compile(r"[\t\n]")


def printable(text: str, *, lines: bool = True) -> str:
    """``text`` without escape sequences and control characters (CR, BEL, DEL, C1...).

    TAB and LF are kept when ``lines`` (text of several lines), else they become spaces.
    """
    text = CONTROL.sub("", text)
    return text if lines else LINE_BREAKS.sub(" ", text)


def markup(value: Any) -> str:
    """A value as one line of rich markup that shows it as it is: ``[bold]`` stays text."""
    from rich.markup import escape

    return escape(printable(str(value), lines=False))


class Output(OutputWrapper):
    """A command's stdout or stderr whose every write is ``printable()``; Django's own
    colours (errors in red on a terminal) are added after, so they stay."""

    def write(  # type: ignore[override]  # as OutputWrapper's own
        self, msg: str = "", style_func: Any = None, ending: str | None = None
    ) -> None:
        super().write(printable(msg), style_func, ending)

    @classmethod
    def around(cls, wrapper: OutputWrapper) -> Output:
        """The same stream and colour as ``wrapper`` (BaseCommand's), filtered."""
        if isinstance(wrapper, Output):
            return wrapper
        safe = cls(cast(TextIO, wrapper._out), ending=wrapper.ending)
        safe.style_func = wrapper.style_func
        return safe


class Formatter(logging.Formatter):
    """Log lines (which name datasets and quote the server) made ``printable()``."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
