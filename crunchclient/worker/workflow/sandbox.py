"""The sandbox: the workflow in Linux namespaces through bubblewrap (``bwrap``).

What a workflow must not read is hidden, not merely left out of its environment: its own
PID namespace (``/proc`` shows only the workflow, so no ``/proc/$PPID/environ``), an
empty home (no ``~/.crunch``, no keys), an empty ``--directory`` but for its own
dataset's folder, the storage settings file masked, a private ``/tmp`` and ``/dev/shm``.
The rest of the file system is read-only; the dataset's folder and the paths opted in
with ``--bind`` are writable. The client's Python and the PATH folders under the home
stay readable, so its tools still run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BWRAP = "bwrap"
TMP = Path("/tmp")
HIDDEN_TOPS = {".crunch", ".aws", ".ssh", ".gnupg", ".config", ".netrc", ".docker", ".kube"}
"""Folders of the home never shown, even when a PATH folder lies in one."""


@dataclass(frozen=True, kw_only=True)
class Hiding:
    """What one workflow may see and write, beside its dataset's folder."""

    workdir: Path
    directory: Path
    """The client's --directory: every other dataset's folder, hidden."""
    masked: tuple[Path, ...] = ()
    """Files that read as empty (the storage settings file)."""
    binds: tuple[Path, ...] = ()
    """Paths the user opted in (--bind): writable."""
    readable: tuple[Path, ...] = ()
    """Paths hidden otherwise that stay readable (a container's image, the image cache)."""
    network: bool = True
    home: Path = field(default_factory=Path.home)


def bwrap_path() -> str | None:
    return shutil.which(BWRAP)


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot start on this node (once per process); None when it can."""
    path = bwrap_path()
    if path is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [path, "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc",
             "--unshare-pid", "--die-with-parent", "--", "true"]  # fmt: skip
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not start ({exc})"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"bwrap cannot make namespaces here ({reason[:200]}): user namespaces may be off"
    return None


@functools.cache
def tools(home: Path) -> list[Path]:
    """What the workflow still needs of what the sandbox hides, read-only: the client's
    Python (its tools, Snakemake, a ``#!`` line naming it) and the PATH's folders. Under
    the home, each one's top folder whole (``~/.pyenv``, ``~/miniconda3``), so that shims
    find the rest of their tree, but never ``~/.crunch`` or keys; under /tmp, the folder
    itself (a virtualenv there)."""
    keep: list[Path] = []
    candidates = [
        sys.prefix, sys.base_prefix, os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
        *os.environ.get("PATH", "").split(os.pathsep),
    ]  # fmt: skip
    for raw in candidates:
        if not raw or not os.path.isdir(raw):
            continue
        path = Path(os.path.realpath(raw))
        if _under(path, home) and path != home:
            top = home / path.relative_to(home).parts[0]
            if top.name not in HIDDEN_TOPS:
                keep.append(top)
        elif _under(path, TMP) and path != TMP:
            keep.append(path)
    return _outermost(keep)


def bwrap_command(command: list[str], hiding: Hiding) -> list[str]:
    """``command`` wrapped in bubblewrap, hiding what ``Hiding`` says."""
    bwrap = bwrap_path() or BWRAP
    home = Path(os.path.realpath(hiding.home))
    directory = Path(os.path.realpath(hiding.directory))
    workdir = Path(os.path.realpath(hiding.workdir))
    # No --die-with-parent: a SIGTERM to the workflow's group would end bwrap, and with it
    # the whole namespace at once, before the workflow's own trap could clean up. The
    # group is ended as a whole by the client (groups.end_group) and its watchdog instead.
    args = [
        bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--tmpfs", "/dev/shm",
        "--proc", "/proc", "--tmpfs", "/tmp",
    ]  # fmt: skip
    if not hiding.network:
        args.append("--unshare-net")
    if home != Path("/"):
        args += ["--tmpfs", str(home)]
    for path in tools(home):
        if not _under(path, directory) and not _under(directory, path):
            args += ["--ro-bind", str(path), str(path)]
    if directory != Path("/"):
        args += ["--tmpfs", str(directory)]
    for path in _outermost(Path(os.path.realpath(p)) for p in hiding.readable):
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for path in hiding.masked:
        real = os.path.realpath(path)
        if os.path.isfile(real):
            args += ["--ro-bind", "/dev/null", real]
    for path in _outermost(Path(os.path.realpath(p)) for p in hiding.binds):
        args += ["--bind", str(path), str(path)]
    args += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--", *command]
    return args


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not inside another of them, in order."""
    chosen: list[Path] = []
    for path in sorted(set(paths)):
        if not any(_under(path, kept) for kept in chosen):
            chosen.append(path)
    return chosen
