"""``python -m crunchclient``: the ``crunch`` console script, for a venv not on the PATH."""

from __future__ import annotations

import sys

from crunchclient.cli import main

sys.exit(main())
