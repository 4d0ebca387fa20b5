"""Streaming transfers between Django storage and the working directory.

Files stream in large chunks with their MD5 computed on the way, independent files
move in parallel, unchanged files are not moved again, names from storage never escape
the destination, and a partly written file never stands under its final name.

download.py and upload.py hold the flows; backends/ how each kind of storage lists,
reads and writes (StorageBackend, and the BACKENDS registry that picks one); paths.py
the path safety; parallel.py the scheduling; copies.py the local copies.
"""

from __future__ import annotations

from crunchclient.transfer.backends import (
    BACKENDS,
    Entry,
    GenericBackend,
    StorageBackend,
    backend_class,
    open_backend,
)
from crunchclient.transfer.backends.local import LocalBackend
from crunchclient.transfer.download import download_tree, fetch_tree
from crunchclient.transfer.paths import PARTIAL_MARK, safe_relative, walk_files
from crunchclient.transfer.upload import TransferResult, checksum_tree, upload_files, upload_tree

__all__ = [
    "BACKENDS",
    "PARTIAL_MARK",
    "Entry",
    "GenericBackend",
    "LocalBackend",
    "StorageBackend",
    "TransferResult",
    "backend_class",
    "checksum_tree",
    "download_tree",
    "fetch_tree",
    "open_backend",
    "safe_relative",
    "upload_files",
    "upload_tree",
    "walk_files",
]
