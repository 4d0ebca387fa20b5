"""Path safety: names from storage stay inside the destination, links in the working
directory are not followed out of it, and a partly written file never stands under its
final name."""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from crunchclient.exceptions import UnsafePathError

logger = logging.getLogger(__name__)

PARTIAL_MARK = ".crunch-partial-"
"""In the name of a file being written; such a file is never taken for a result."""

T = TypeVar("T")


def safe_relative(name: str) -> str:
    """Return name as a clean relative posix path, refusing anything that escapes."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"Refusing empty or NUL-containing file name {name!r} from storage.")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(
            f"Refusing absolute path {name!r} from storage: remove or rename it in storage."
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        raise UnsafePathError(
            f"Refusing path {name!r} from storage: it escapes the dataset folder; "
            "remove or rename it in storage."
        )
    return "/".join(parts)


def join(prefix: str, rel: str) -> str:
    """The storage name of rel under prefix."""
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def inside(path: Path | str, root: Path | str) -> bool:
    """Whether path, with every link resolved, lies within the already resolved root."""
    try:
        Path(os.path.realpath(path)).relative_to(root)
    except ValueError:
        return False
    return True


def write_then_rename(target: str, token: str, write: Callable[[str], T]) -> T:
    """Call write(partial) on a new name beside target, then rename it to target.

    On any error, Ctrl+C included, the partial file is removed and target is untouched.
    A partial file left by a killed process is skipped by listing() and removed by the
    next download into its folder.
    """
    partial = f"{target}{PARTIAL_MARK}{token}"
    try:
        result = write(partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return result


def listing(folder: str, *, clean: bool = False) -> list[os.DirEntry[str]]:
    """The entries of one folder, without partial files (removed from disk if clean).

    A folder that is missing, or no folder, lists as empty.
    """
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not any(PARTIAL_MARK in entry.name for entry in entries):
        return entries
    kept: list[os.DirEntry[str]] = []
    for entry in entries:
        if PARTIAL_MARK not in entry.name:
            kept.append(entry)
        elif clean and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)  # left half-written by a killed run
    return kept


def walk(root: Path | str, *, follow: bool = False, warn: bool = True) -> Iterator[
    tuple[str, os.DirEntry[str]]
]:  # fmt: skip
    """Yield (relative posix path, entry) of the regular files under root.

    The one walk of a local folder. With follow (a local storage, which serves what it
    holds), every link is followed. Without (a working directory), only links that stay
    inside root are, so a workflow's link to a reference genome elsewhere is neither
    hashed nor uploaded; if warn, each link that leads out is logged.
    """
    base = str(root)
    stack = [""]
    while stack:
        current = stack.pop()
        for entry in listing(os.path.join(base, current) if current else base):
            rel = f"{current}/{entry.name}" if current else entry.name
            if follow:
                if entry.is_dir():
                    stack.append(rel)
                elif entry.is_file():
                    yield rel, entry
            elif entry.is_symlink():
                if not inside(entry.path, base):
                    if warn:
                        logger.warning("Not following link %r: it points outside %s", rel, base)
                    continue
                if entry.is_file():
                    yield rel, entry
                # A linked directory inside the tree is reached through its real path.
            elif entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                yield rel, entry


def walk_files(root: Path, *, warn: bool = True) -> Iterator[str]:
    """Yield the relative posix paths of regular files under root, staying inside it
    (and, if warn, log each link that leads out)."""
    for rel, _entry in walk(root, warn=warn):
        yield rel


def prepare_folder(root: Path, parent: str, made: dict[str, bool]) -> bool:
    """Make root/parent (a checked relative path); return whether it existed before.

    Refuse a folder that a link takes out of root: files from storage must not land
    in whatever a workflow's link points at. made caches the folders already checked
    (folder -> existed before), so each level costs one mkdir, not a realpath.
    """
    if parent in made:
        return made[parent]
    if parent:
        prepare_folder(root, posixpath.dirname(parent), made)  # the ancestors first
    folder = os.path.join(root, parent)
    try:
        os.mkdir(folder)
        existed = False  # a real folder just made inside a checked one: inside root
    except FileExistsError:
        existed = True
        if not stat.S_ISDIR(os.lstat(folder).st_mode) and not inside(folder, root):
            raise UnsafePathError(
                f"Refusing to write into {parent!r}: it links outside {str(root)!r}; "
                "remove the link."
            ) from None
    made[parent] = existed
    return existed
