from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from tests.clientkit import crunch  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The same promises on local storage and on S3 (moto's server)."""
    if request.param == "local":
        return FileSystemStorage(location=tmp_path / "media")
    return request.getfixturevalue("s3_storage")
