"""The docs site's generated reference pages are those the code produces today.

Each page is built again here, from the parsers, the OpenAPI schema, the exit-code
registry and the settings class, and compared with the file in docs/reference/. The pages
are those of the Python that CI and ``make docs`` run (GENERATED_ON): argparse's usage lines
are its own, and may wrap otherwise elsewhere, so tox's other Pythons skip the comparison.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.reference_docs import PAGES, ROOT

GENERATED_ON = (3, 11)


@pytest.mark.skipif(
    sys.version_info[:2] != GENERATED_ON, reason="the pages are generated on Python 3.11"
)
@pytest.mark.parametrize(("path", "build"), PAGES.items(), ids=[path.name for path in PAGES])
def test_generated_page_is_up_to_date(path: Path, build: Callable[[], str]) -> None:
    assert path.read_text(encoding="utf-8") == build(), (
        f"{path.relative_to(ROOT)} is out of date; run: python scripts/reference_docs.py"
    )


def test_the_site_lists_every_reference_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for path in PAGES:
        assert str(path.relative_to(ROOT / "docs")) in nav
