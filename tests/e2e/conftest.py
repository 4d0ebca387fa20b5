from __future__ import annotations

from tests.clientkit import crunch  # noqa: F401
