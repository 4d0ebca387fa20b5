from __future__ import annotations

from tests.clientkit import crunch, served_crunch  # noqa: F401
