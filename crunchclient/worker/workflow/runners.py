"""How the workflow's process is started: the one place that decides (``--isolation``).

- *container*: the project names an image; it runs through the node's runtime
  (containers.py), inside the sandbox too when the runtime shares the host's PIDs;
- *sandbox*: bubblewrap hides what the workflow must not read (sandbox.py); the default
  where it works;
- *none*: as the client's own user, seeing what the client sees: by choice
  (``--isolation none``), or with a warning where the sandbox cannot start.

``Runner.check()`` runs before anything is claimed, like the workflow kind's check.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from crunchclient.exceptions import ConfigurationError
from crunchclient.settings import bootstrap
from crunchclient.settings.config import ClientConfig
from crunchclient.worker.workflow import containers, sandbox
from crunchclient.worker.workflow.containers import Request, Runtime
from crunchclient.worker.workflow.sandbox import Hiding

logger = logging.getLogger(__name__)

WORKFLOW_VARIABLES = "CRUNCH_"
"""Variables a container gets from the client: crunch's own for the workflow (and --pass-env's)."""
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")  # a slot's own GPUs
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WARNED: set[str] = set()


@dataclass(frozen=True)
class Launch:
    """The workflow's command as started, what it runs in, and the image's digest."""

    argv: list[str]
    env: dict[str, str]
    where: str
    image_digest: str | None = None


class Runner:
    """Decides, for one client and one project, how the workflow starts."""

    def __init__(self, config: ClientConfig, container: str = "") -> None:
        self.config = config
        self.container = container
        self.runtime: Runtime | None = None
        self.digest: str | None = None
        self.checked = False

    @property
    def sandboxed(self) -> bool:
        """Whether the sandbox wraps the workflow (or a runtime that needs it)."""
        if self.config.isolation == "none":
            return False
        if self.config.isolation == "sandbox":
            return True
        return sandbox.sandbox_problem() is None

    def check(self) -> None:
        """Refuse before claiming: the sandbox asked for cannot start, the runtime or the
        image is missing. Warn once when the default falls back to no isolation. Once per
        runner: a loop checks each claim's project, and an image's digest costs a walk."""
        if self.checked:
            return
        problem = sandbox.sandbox_problem() if self.config.isolation != "none" else None
        if problem and self.config.isolation == "sandbox":
            raise ConfigurationError(
                f"--isolation sandbox: {problem}; install bubblewrap, or pass "
                "--isolation none to run workflows unisolated."
            )
        if problem and "auto" not in WARNED:
            WARNED.add("auto")
            logger.warning(
                "Workflows run unisolated: %s (--isolation none to say so, or install "
                "bubblewrap).", problem,
            )  # fmt: skip
        if self.container:
            self.runtime = containers.find_runtime(self.config.runtime, self.cache, self.container)
            if not self.runtime.own_pids and not self.sandboxed and "pids" not in WARNED:
                WARNED.add("pids")
                logger.warning(
                    "%s shares the node's processes: without the sandbox the workflow can "
                    "read the client's environment in /proc.", self.runtime.name,
                )  # fmt: skip
            self.digest = self.runtime.prepare(self.container)
        self.checked = True

    @property
    def shares_cgroup(self) -> bool:
        """Whether the workflow runs in the client's cgroup, whose OOM kills the client
        reads (failures.OomCounter): not in podman's or docker's containers, which get a
        cgroup of their own, nor in apptainer's with --memory."""
        if not self.container or self.runtime is None:
            return True
        if isinstance(self.runtime, containers.Podman):  # Docker is one too
            return False
        return not (isinstance(self.runtime, containers.Apptainer) and self.config.memory)

    @property
    def cache(self) -> Path:
        return self.config.cache or Path.home() / ".cache" / "crunch" / "images"

    def launch(self, command: list[str], env: dict[str, str], workdir: Path) -> Launch:
        """The argv and environment that start ``command`` in ``workdir``."""
        config = self.config
        hiding = Hiding(
            workdir=workdir, directory=config.directory, masked=masked_files(),
            binds=config.binds, network=config.network,
        )  # fmt: skip
        if self.container:
            if self.runtime is None:
                self.check()
            assert self.runtime is not None
            request = Request(
                image=self.container, command=command, workdir=workdir,
                env=container_env(env, config.pass_env, self.runtime),
                cores=config.cores, memory=config.memory, network=config.network,
                binds=config.binds,
            )  # fmt: skip
            if isinstance(self.runtime, containers.Charliecloud):
                self.runtime.make_mount_point(self.container, workdir)
            argv = self.runtime.command(request)
            where = f"container {self.container!r} through {self.runtime.name}"
            host_env = {**env, "USER": env.get("USER") or user_name()}
            if self.runtime.own_pids or not self.sandboxed:
                return Launch(argv, host_env, where, self.digest)
            hiding = replace(hiding, readable=self.runtime.readable(self.container))
            return Launch(
                sandbox.bwrap_command(argv, hiding), host_env, f"{where}, in the sandbox",
                self.digest,
            )  # fmt: skip
        if not self.sandboxed:
            return Launch(command, env, "no isolation")
        return Launch(
            sandbox.bwrap_command(command, hiding), {**env, "TMPDIR": "/tmp"}, "the sandbox"
        )


def container_env(
    env: dict[str, str], pass_env: tuple[str, ...], runtime: Runtime
) -> dict[str, str]:
    """The variables a container gets: crunch's own, the GPUs' and --pass-env's, never the
    client's others; the runtimes that start empty get a PATH."""
    kept = {
        name: value for name, value in env.items()
        if name.startswith(WORKFLOW_VARIABLES) or name in pass_env or name in GPU_VARIABLES
    }  # fmt: skip
    if isinstance(runtime, containers.Charliecloud):
        kept.setdefault("PATH", CONTAINER_PATH)
        kept.setdefault("HOME", "/tmp")
    return kept


def masked_files() -> tuple[Path, ...]:
    """The storage settings file, if the client read one: it reads as empty inside."""
    path = bootstrap.PROCESS.configured_from
    return (Path(path),) if path is not None else ()


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
