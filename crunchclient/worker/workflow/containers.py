"""Containers: the workflow inside the project's image, through the node's runtime.

Each runtime is one class with the flags that give the same hiding as the sandbox: the
dataset's folder bound at the same path and the working directory, no home, the
image's environment plus the workflow's own variables only (never the client's), its
own PID namespace where the runtime has one (Charliecloud has none: it runs inside the
sandbox), no network with ``--no-network``, ``--cores`` and ``--memory`` as limits where
the runtime enforces them. ``RUNTIMES`` is the order a node's runtimes are tried in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from crunchclient.exceptions import ConfigurationError

DOCKER = "docker://"


@dataclass(frozen=True, kw_only=True)
class Request:
    """One workflow to run in ``image``: its command, folder, variables and limits."""

    image: str
    command: list[str]
    workdir: Path
    env: dict[str, str]
    """The variables the workflow gets (crunch's own and --pass-env's), not the client's."""
    cores: int = 1
    memory: str | None = None
    network: bool = True
    binds: tuple[Path, ...] = ()


class Runtime:
    """One container runtime: its executable and how it runs a Request."""

    name: ClassVar[str]
    executables: ClassVar[tuple[str, ...]]
    own_pids: ClassVar[bool] = True
    """Whether the container gets its own PID namespace (else it runs in the sandbox)."""

    def __init__(self, executable: str, cache: Path) -> None:
        self.executable = executable
        self.cache = cache

    @classmethod
    def find(cls, cache: Path) -> Runtime | None:
        for name in cls.executables:
            if path := shutil.which(name):
                return cls(path, cache)
        return None

    def command(self, request: Request) -> list[str]:
        raise NotImplementedError

    def prepare(self, image: str) -> str:
        """Make the image ready on this node (pulled or converted once, into the cache);
        return its digest (``sha256:...``). ConfigurationError when it cannot be had."""
        raise NotImplementedError

    def env_flags(self, env: dict[str, str], flag: str) -> list[str]:
        return [item for name, value in sorted(env.items()) for item in (flag, f"{name}={value}")]

    def readable(self, image: str) -> tuple[Path, ...]:
        """What the sandbox must leave readable for this runtime to start ``image``."""
        return ()


class Charliecloud(Runtime):
    """``ch-run`` on an image directory (unprivileged); run inside the sandbox for its PIDs."""

    name = "charliecloud"
    executables = ("ch-run",)
    own_pids = False

    def command(self, request: Request) -> list[str]:
        workdir = str(request.workdir)
        binds = [f"--bind={path}" for path in (request.workdir, *request.binds)]
        # ch-run's --set-env takes its value only joined to it: --set-env=NAME=VALUE.
        variables = [f"--set-env={name}={value}" for name, value in sorted(request.env.items())]
        return [
            self.executable, "--unset-env=*", *variables, *binds, f"--cd={workdir}",
            image_path(request.image), "--", *request.command,
        ]  # fmt: skip

    def readable(self, image: str) -> tuple[Path, ...]:
        return (Path(image_path(image)),)

    def prepare(self, image: str) -> str:
        path = Path(image_path(image))
        if not (path / "bin").is_dir() and not (path / "usr").is_dir():
            raise ConfigurationError(
                f"The image {image!r} is not a Charliecloud image directory here: "
                "unpack it first (ch-image build, ch-convert) or name its directory."
            )
        return directory_digest(path, self.cache)

    def make_mount_point(self, image: str, workdir: Path) -> None:
        """ch-run mounts the image read-only and binds only onto folders it holds (a tmpfs
        of its own under /tmp): make the dataset's folder's path in the image, which is
        the user's own folder. ConfigurationError when it cannot be made."""
        real = Path(os.path.realpath(workdir))
        if Path("/tmp") in real.parents:
            return
        inside = Path(image_path(image)) / real.relative_to("/")
        try:
            inside.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"Charliecloud cannot bind the dataset's folder {str(real)!r} into the image "
                f"{image!r} ({exc.strerror}): pass a --directory under /tmp, or make the "
                "image's folder writable."
            ) from exc


class Apptainer(Runtime):
    """``apptainer exec`` (or ``singularity``) on a .sif file or a docker:// image."""

    name = "apptainer"
    executables = ("apptainer", "singularity")

    def command(self, request: Request) -> list[str]:
        command = [
            self.executable, "exec", "--contain", "--cleanenv", "--pid", "--ipc", "--no-home",
            "--bind", str(request.workdir), "--pwd", str(request.workdir),
            *[item for path in request.binds for item in ("--bind", str(path))],
            *self.env_flags(request.env, "--env"),
        ]  # fmt: skip
        if not request.network:
            command += ["--net", "--network", "none"]
        if request.memory:
            command += ["--memory", request.memory]
        command += ["--cpus", str(request.cores)]
        return [*command, self.local(request.image), *request.command]

    def local(self, image: str) -> str:
        """A docker:// image as the .sif it was converted to in the cache, else as given."""
        if image.startswith(DOCKER):
            return str(self.cache / (hashlib.sha256(image.encode()).hexdigest()[:16] + ".sif"))
        return image

    def prepare(self, image: str) -> str:
        local = Path(self.local(image))
        if image.startswith(DOCKER) and not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            run([self.executable, "pull", str(local), image], f"pull {image!r}")
        if not local.is_file():
            raise ConfigurationError(f"The image {image!r} is not a file on this node.")
        return file_digest(local, self.cache)


class Podman(Runtime):
    """``podman run`` (rootless), as the user, the image's own environment."""

    name = "podman"
    executables = ("podman",)

    def command(self, request: Request) -> list[str]:
        workdir = str(request.workdir)
        command = [
            self.executable, "run", "--rm", "--init", "--pull=never",
            f"--volume={workdir}:{workdir}", f"--workdir={workdir}",
            *[f"--volume={path}:{path}" for path in request.binds],
            *self.env_flags(request.env, "--env"), f"--cpus={request.cores}",
        ]  # fmt: skip
        command += self.user_flags()
        if not request.network:
            command.append("--network=none")
        if request.memory:
            command.append(f"--memory={request.memory}")
        return [*command, docker_name(request.image), *request.command]

    def user_flags(self) -> list[str]:
        return ["--userns=keep-id"]

    def prepare(self, image: str) -> str:
        name = docker_name(image)
        inspect = [self.executable, "image", "inspect", "--format", "{{.Id}}", name]
        found = subprocess.run(inspect, capture_output=True, text=True, check=False)
        if found.returncode != 0:
            run([self.executable, "pull", name], f"pull {image!r}")
            found = subprocess.run(inspect, capture_output=True, text=True, check=False)
        digest = found.stdout.strip()
        return digest if digest.startswith("sha256:") else f"sha256:{digest}"


class Docker(Podman):
    """``docker run``, as the user's uid and gid (no root in the container)."""

    name = "docker"
    executables = ("docker",)

    def user_flags(self) -> list[str]:
        return [f"--user={os.getuid()}:{os.getgid()}"]


RUNTIMES: dict[str, type[Runtime]] = {
    cls.name: cls for cls in (Apptainer, Podman, Docker, Charliecloud)
}
"""Tried in this order when --runtime names none."""


def find_runtime(name: str | None, cache: Path, image: str = "") -> Runtime:
    """The runtime --runtime names, else the first found that takes ``image`` (an image
    folder is Charliecloud's, a .sif Apptainer's); ConfigurationError if none."""
    if image.startswith(("/", ".", "~")):  # a path on this node, not a registry's name
        local = Path(image_path(image))
        if not local.exists():
            raise ConfigurationError(
                f"The project's image {image!r} does not exist on this node: copy or build "
                "it there, or run the project on a node that has it."
            )
        if name is None:
            cls: type[Runtime] = Charliecloud if local.is_dir() else Apptainer
            if (found := cls.find(cache)) is None:
                raise ConfigurationError(
                    "The project runs in a container, but no container runtime is on the "
                    f"PATH that runs its image {image!r}: install {cls.name} "
                    f"({' or '.join(cls.executables)}), or run the project elsewhere."
                )
            return found
    if name is not None:
        found = RUNTIMES[name].find(cache)
        if found is None:
            wanted = " or ".join(RUNTIMES[name].executables)
            raise ConfigurationError(f"--runtime {name}: {wanted} is not on the PATH.")
        return found
    for cls in RUNTIMES.values():
        if (runtime := cls.find(cache)) is not None:
            return runtime
    raise ConfigurationError(
        "The project runs in a container, but no container runtime is on the PATH: install "
        f"one of {', '.join(RUNTIMES)}, or run it elsewhere."
    )


def image_path(image: str) -> str:
    return os.path.abspath(os.path.expanduser(image))


def docker_name(image: str) -> str:
    return image.removeprefix(DOCKER)


def run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ConfigurationError(f"Cannot {what} on this node: {reason[:300]}")


def file_digest(path: Path, cache: Path) -> str:
    """sha256 of a file, remembered in the cache by its size and modification time."""
    info = path.stat()
    return _remembered(cache, f"{path}:{info.st_size}:{info.st_mtime_ns}", lambda: _hash([path]))


def directory_digest(path: Path, cache: Path) -> str:
    """sha256 over an image directory's names, link targets and file bytes, in order;
    remembered in the cache while no file in it changed size or time."""
    files = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
    stamp = hashlib.sha256()
    for file in files:
        info = file.lstat()
        stamp.update(f"{file}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return _remembered(cache, stamp.hexdigest(), lambda: _hash(files, root=path))


def _hash(files: list[Path], root: Path | None = None) -> str:
    digest = hashlib.sha256()
    for file in files:
        if root is not None:
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        if file.is_symlink():
            digest.update(os.readlink(file).encode() + b"\0")
            continue
        with open(file, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _remembered(cache: Path, key: str, compute: object) -> str:
    index = cache / "digests.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(found := known.get(key), str):
        return found
    assert callable(compute)
    digest = str(compute())
    known[key] = digest
    try:
        cache.mkdir(parents=True, exist_ok=True)
        index.write_text(json.dumps(known))
    except OSError:
        pass  # a cache that cannot be written costs a hash next time, nothing more
    return digest
