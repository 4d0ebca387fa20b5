"""Names of a package that load on first use (PEP 562), for ``crunch.services`` and
``crunchclient``: importing the package during Django's app loading imports nothing more."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``names`` map each public name
    to the module defining it."""
    module = importlib.import_module(package)

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        vars(module)[name] = value  # the next lookup finds it without calling us
        return value

    def dir_() -> list[str]:
        return sorted({*vars(module), *names})

    return getattr_, dir_
