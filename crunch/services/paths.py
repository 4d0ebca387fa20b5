"""Where a dataset's files may live in storage.

A dataset's ``base_file_path`` is a folder relative to the storage's root. It must stay
inside the storage and no dataset's folder may hold another's: a dataset whose path
pointed at another's folder would let its readers download the other's files.
"""

from __future__ import annotations

import posixpath
import unicodedata

from crunch.models import Dataset

EXAMPLE = "crunch/<project>/<dataset>"


class UnsafePath(ValueError):
    """A ``base_file_path`` that could leave the storage or is not a plain folder name."""


def clean_base_file_path(text: str) -> str:
    """``text`` as a normalised relative folder, or UnsafePath saying what is wrong.

    ``a//b/./c/`` becomes ``a/b/c``; ``..``, a leading ``/``, backslashes and control
    characters (NUL, newlines) are refused rather than repaired, since they show intent
    to leave the folder or to confuse whoever reads the path.
    """
    if not isinstance(text, str) or not text.strip():
        raise UnsafePath(f"The folder is empty; give one inside the storage, e.g. {EXAMPLE!r}.")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise UnsafePath(
            f"The folder {text!r} holds a control character (NUL, newline, ...); remove it."
        )
    if "\\" in text:
        raise UnsafePath(f"The folder {text!r} holds a backslash; separate folders with '/'.")
    if text.startswith("/"):
        raise UnsafePath(
            f"The folder {text!r} is absolute; give it relative to the storage, e.g. {EXAMPLE!r}."
        )
    if ".." in text.split("/"):
        raise UnsafePath(f"The folder {text!r} holds '..'; give a folder inside the storage.")
    normal = posixpath.normpath(text)
    if normal in ("", "."):
        raise UnsafePath(
            f"The folder {text!r} is the storage's root; give a folder inside it, e.g. {EXAMPLE!r}."
        )
    return normal


def ancestors(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``: the folders that hold ``path``."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def overlapping_dataset(path: str, exclude_pk: int | None = None) -> Dataset | None:
    """A dataset whose folder equals ``path``, holds it or lies inside it; None if none.

    Two index lookups (equality and prefix). The prefix match is checked again in Python
    because SQLite's LIKE ignores case, and storage paths do not.
    """
    datasets = Dataset.objects.only("id", "slug", "base_file_path", "project").order_by("id")
    if exclude_pk is not None:
        datasets = datasets.exclude(pk=exclude_pk)
    same_or_above = datasets.filter(base_file_path__in=[path, *ancestors(path)]).first()
    if same_or_above is not None:
        return same_or_above
    for dataset in datasets.filter(base_file_path__startswith=path + "/")[:100]:
        if dataset.base_file_path.startswith(path + "/"):
            return dataset
    return None


def overlap_message(path: str, other: Dataset, *, named: bool = True) -> str:
    """One line saying which dataset's folder ``path`` collides with.

    ``named=False`` when the caller may not view ``other``: neither its slug nor its
    folder is told, only that the folder is taken.
    """
    if not named:
        return (
            f"The folder {path!r} overlaps another dataset's folder; "
            "give each dataset a folder of its own."
        )
    if other.base_file_path == path:
        where = "is the folder of"
    elif path.startswith(other.base_file_path + "/"):
        where = "lies inside the folder of"
    else:
        where = "holds the folder of"
    return (
        f"The folder {path!r} {where} dataset {other.slug!r} ({other.base_file_path!r}); "
        "give each dataset a folder of its own."
    )
