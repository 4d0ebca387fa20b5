"""``python -m crunchclient.cli``: how ``crunch submit``'s job script runs ``crunch loop``."""

from __future__ import annotations

import sys

from crunchclient.cli import main

sys.exit(main())
