"""Write docs/permissions.md from the permission tables the tests check, cell by cell.

The API, pages and files (tests/server/permission_table.py) and the admin
(tests/server/admin_permission_table.py), each cell run by a test.

Usage: python scripts/permissions_doc.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server.permission_table import markdown  # noqa: E402

DOC = ROOT / "docs" / "permissions.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = markdown()
    if args.check:
        if DOC.exists() and DOC.read_text() == text:
            return 0
        print(f"{DOC.relative_to(ROOT)} is out of date; run: python scripts/permissions_doc.py")
        return 1
    DOC.write_text(text)
    print(f"Wrote {DOC.relative_to(ROOT)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
