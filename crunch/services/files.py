"""The dataset file browser: a storage folder listed and opened without leaving it.

A dataset's folder may hold anything a workflow wrote: symlinks to anywhere, names that
are not UTF-8 or hold newlines, folders 100 levels deep. Nothing here follows a link out
of the dataset's folder, and every name reaches the page as valid text.
"""

from __future__ import annotations

import os
import posixpath
import unicodedata
from dataclasses import dataclass, field

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from crunch.constants import PARTIAL_MARK
from crunch.models import Dataset
from crunch.services.paths import UnsafePath, clean_base_file_path

TREE_LIMIT = 500  # files and folders listed from storage before the tree is cut short
TREE_DEPTH = 20  # folder levels opened; deeper folders are listed, not opened


def default_storage() -> Storage:
    return storages["default"]


@dataclass(kw_only=True)
class FileNode:
    """A folder or file under a dataset's base path; ``path`` is relative to it."""

    name: str
    path: str
    size: int | None = None
    children: list[FileNode] = field(default_factory=list)

    @property
    def is_dir(self) -> bool:
        return self.size is None

    @property
    def total_size(self) -> int:
        if not self.is_dir:
            return self.size or 0
        return sum(child.total_size for child in self.children)

    @property
    def label(self) -> str:
        """The name as text a page can show: bytes that are not UTF-8 as \ufffd."""
        return readable(self.name)

    @property
    def downloadable(self) -> bool:
        """Whether a URL can name the file: UTF-8, no newline or other control character."""
        return is_plain_path(self.path)


@dataclass(kw_only=True)
class FileTree:
    root: FileNode
    files: int = 0
    folders: int = 0
    truncated: bool = False


def readable(name: str) -> str:
    """``name`` (as listed, with surrogates for undecodable bytes) as valid UTF-8 text."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def is_plain_path(path: str) -> bool:
    """UTF-8, without control characters, and safe as a relative path."""
    if readable(path) != path or any(unicodedata.category(char) == "Cc" for char in path):
        return False
    return safe_relative_path(path) == path


@dataclass(frozen=True)
class Place:
    """The storage and the dataset's folder in it, with what keeps links inside."""

    storage: Storage
    base: str
    real_base: str | None
    """On a local disk, the folder's real path: every entry must resolve under it."""

    def name(self, relative: str) -> str:
        return posixpath.join(self.base, relative) if relative else self.base

    def inside(self, relative: str) -> bool:
        """False for an entry whose real path (a symlink's target) leaves the folder."""
        if self.real_base is None:
            return True
        try:
            real = os.path.realpath(self.storage.path(self.name(relative)))
        except (OSError, ValueError, SuspiciousFileOperation):
            return False
        return real == self.real_base or real.startswith(self.real_base + os.sep)


def dataset_place(dataset: Dataset) -> Place | None:
    """Where the dataset's files are, or None when its folder is unsafe or leaves storage.

    ``base_file_path`` is checked again here: rows from before the API checked it may
    hold ``..`` or an absolute path, and a symlinked folder may point anywhere.
    """
    try:
        base = clean_base_file_path(dataset.base_file_path)
    except UnsafePath:
        return None
    storage = default_storage()
    if not isinstance(storage, FileSystemStorage):
        return Place(storage, base, None)
    try:
        location = os.path.realpath(storage.location)
        real_base = os.path.realpath(storage.path(base))
    except (OSError, ValueError, SuspiciousFileOperation):
        return None
    if not real_base.startswith(location + os.sep):
        return None
    return Place(storage, base, real_base)


def file_tree(dataset: Dataset, *, limit: int = TREE_LIMIT, depth: int = TREE_DEPTH) -> FileTree:
    """The dataset's files in storage, folders first, cut short after ``limit`` entries.

    Folders below ``depth`` levels are listed but not opened, so a tree 100 levels deep
    neither recurses the page's templates too far nor lists forever; symlinks that leave
    the dataset's folder are left out.
    """
    tree = FileTree(root=FileNode(name="", path=""))
    place = dataset_place(dataset)
    if place is not None:
        _walk(place, tree.root, tree, limit, depth)
    return tree


def _walk(place: Place, node: FileNode, tree: FileTree, limit: int, depth: int) -> None:
    try:
        folders, files = place.storage.listdir(place.name(node.path))
    except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
        return
    for name in sorted(folders):
        path = posixpath.join(node.path, name) if node.path else name
        if not place.inside(path):
            continue
        if tree.files + tree.folders >= limit:
            tree.truncated = True
            return
        child = FileNode(name=name, path=path)
        node.children.append(child)
        tree.folders += 1
        if depth <= 1:
            tree.truncated = True
            continue
        _walk(place, child, tree, limit, depth - 1)
        if tree.truncated and tree.files + tree.folders >= limit:
            return
    for name in sorted(files):
        path = posixpath.join(node.path, name) if node.path else name
        if PARTIAL_MARK in name or not place.inside(path):
            continue  # a file the client is still writing, or one leaving the folder
        if tree.files + tree.folders >= limit:
            tree.truncated = True
            return
        try:
            size = place.storage.size(place.name(path))
        except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
            size = 0
        node.children.append(FileNode(name=name, path=path, size=size))
        tree.files += 1


def safe_relative_path(path: str) -> str | None:
    """``path`` normalised inside the dataset's folder, or None when it would leave it."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    if ".." in path.split("/"):
        return None
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("../") or normal == "..":
        return None
    return normal


def open_dataset_file(dataset: Dataset, path: str) -> tuple[File[bytes], str] | None:
    """The dataset's file at ``path`` opened for reading and its name, or None.

    None also for a file reached through a symlink that leaves the dataset's folder.
    """
    relative = safe_relative_path(path)
    place = dataset_place(dataset)
    if relative is None or place is None or not place.inside(relative):
        return None
    if PARTIAL_MARK in posixpath.basename(relative):
        return None  # half-written by a client, perhaps killed: not a file of the dataset
    name = place.name(relative)
    try:
        if not place.storage.exists(name):
            return None
        return place.storage.open(name, "rb"), posixpath.basename(relative)
    except (OSError, ValueError, NotImplementedError, SuspiciousFileOperation):
        return None
