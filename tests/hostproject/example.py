"""Run inside the host project (``pytest --ds tests.hostproject.settings``, see
tests/test_hostproject.py): the "Using crunch from Python" code of the host project's
how-to (docs/how-to/host-project.md), as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages

from crunch.models import Dataset

README = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "host-project.md"


def readme_example() -> str:
    """The first Python block under the page's heading "Using crunch from Python"."""
    section = README.read_text(encoding="utf-8").split("## Using crunch from Python", 1)[1]
    match = re.search(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert match, f"{README.name} has no Python block under 'Using crunch from Python'"
    return match.group(1)


@pytest.mark.django_db(transaction=True)
def test_the_readme_example_runs(
    live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRUNCH_URL", f"{live_server.url}/lab/")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(readme_example(), str(README), "exec"), namespace)

    storage = storages["default"]
    for dataset in Dataset.objects.exclude(name="west"):
        stored = f"{dataset.base_file_path}/hello.txt"
        with storage.open(stored) as handle:
            assert handle.read() == f"hello {dataset.name}\n".encode()
    assert Dataset.objects.get(name="west").state == "pending"
