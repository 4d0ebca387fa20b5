"""Path safety: names from storage and from the server stay inside their folder, links
in storage are never followed, links in the working directory not out of it, and a
partly or cut-off written file never stands under its final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from crunch.constants import PARTIAL_MARK as PARTIAL_MARK
from crunchclient.exceptions import TransferError, UnsafePathError

logger = logging.getLogger(__name__)

# In the name of a file being written; such a file is never taken for a result, never
# listed from storage, and removed by the next Setup or Upload of its folder.
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

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


def partial_name(target: str, token: str) -> str:
    """The temporary name target is written under, beside it: short whatever target's
    length (a 255-byte name must still fit in NAME_MAX), unique per target and token."""
    folder, name = os.path.split(target)
    key = hashlib.blake2s(name.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return os.path.join(folder, f"{PARTIAL_MARK}{token}-{key}")


def write_then_rename(target: str, token: str, write: Callable[[str], T]) -> T:
    """Call write(partial) on a new name beside target, then rename it to target.

    On any error, Ctrl+C included, the partial file is removed and target is untouched;
    a full disk is said in one line. A partial file left by a killed process is skipped
    by listing() and removed by the next Setup or Upload of its folder.
    """
    partial = partial_name(target, token)
    try:
        result = write(partial)
        os.replace(partial, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        if isinstance(exc, OSError) and exc.errno in FULL:
            raise TransferError(
                f"Cannot write {target!r}: {exc.strerror} (the file was not kept); free space "
                "on that disk and run again."
            ) from exc
        raise
    return result


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of data to fd: os.write may write less (a disk nearly full)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


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


def walk(
    root: Path | str, *, storage: bool = False, warn: bool = True, clean: bool = False
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (relative posix path, entry) of the regular files under root.

    The one walk of a local folder. In storage, no link is followed, whatever it points
    at: a link there is no file of the dataset (the server's pages hide them too), and
    following one would copy a node's secret or another dataset's files, or write
    through it; each is skipped, with a warning if warn. With clean, partial files a
    killed run left are removed. In a working directory, only links that stay inside
    root are followed, so a workflow's link to a reference genome elsewhere is neither
    hashed nor uploaded; if warn, each link that leads out is logged.
    """
    base = str(root)
    stack = [""]
    while stack:
        current = stack.pop()
        for entry in listing(os.path.join(base, current) if current else base, clean=clean):
            rel = f"{current}/{entry.name}" if current else entry.name
            if entry.is_symlink():
                if storage or not inside(entry.path, base):
                    if warn:
                        why = "it is in storage" if storage else f"it points outside {base}"
                        logger.warning("Not following link %r: %s", rel, why)
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


def plain_name(value: str, what: str) -> str:
    """value as one folder name of a local path, or UnsafePathError naming what it is.

    Refuses what a path would read as more than one plain name: empty, ``.``, ``..``,
    separators, a drive (``:``), control characters.
    """
    if (
        value in ("", ".", "..") or any(char in value for char in "/\\:")
        or any(ord(char) < 32 or ord(char) == 127 for char in value)
    ):  # fmt: skip
        raise UnsafePathError(
            f"Refusing the {what} {value!r} from the server: it is not a plain folder name, "
            "so its folder would not stay inside --directory."
        )
    return value


def work_folder(directory: Path, project: str, dataset: str) -> Path:
    """<directory>/<project>/<dataset's short slug>: the one rule for a dataset's local
    folder, refused (UnsafePathError) unless it stays inside directory."""
    name = dataset.split(":", 1)[-1]
    return directory / plain_name(project, "project slug") / plain_name(name, "dataset slug")


def make_work_folder(directory: Path, folder: Path) -> None:
    """Make folder (from work_folder()) and refuse it if a link takes it out of directory:
    a workflow may have left one in place of a project's or dataset's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = os.path.join(os.path.realpath(directory), os.path.relpath(folder, directory))
    if os.path.realpath(folder) != expected:
        raise UnsafePathError(
            f"Refusing the folder {str(folder)!r}: a link takes it out of {str(directory)!r}; "
            "remove the link."
        )


def remove_work_folder(directory: Path, folder: Path) -> bool:
    """Delete folder (from work_folder()) unless a link takes it out of directory; whether
    it was deleted. --cleanup never deletes anything outside --directory."""
    expected = os.path.join(os.path.realpath(directory), os.path.relpath(folder, directory))
    if os.path.realpath(folder) != expected or os.path.islink(folder):
        logger.warning("Not deleting %s: a link takes it out of %s", folder, directory)
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
