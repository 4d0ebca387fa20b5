"""crunch's benchmarks: run each from the repository's root, ``python -m benchmarks.NAME``."""

from __future__ import annotations
