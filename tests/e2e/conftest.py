from __future__ import annotations

from tests.clientkit import crunch, served_crunch  # noqa: F401
from tests.e2e.nodekit import node, outside  # noqa: F401
