"""Issue 26: the exact command lines that start a workflow in the sandbox or a container.

Which run for real here and which are checked only as command lines:

- bubblewrap (the sandbox) and Charliecloud run for real in tests/e2e/test_isolation.py
  and tests/e2e/test_containers.py (CI installs ``bubblewrap`` and ``charliecloud``);
- Podman, Docker and Apptainer are command lines only, below: Podman installs on these
  machines but its runtime fails (``crun: cgroups in hybrid mode not supported``, cgroups
  v1), Apptainer has no Debian package, and Docker has no usable daemon here.

What a reader checks on each: no variable of the client's but crunch's own (and
--pass-env's), the dataset's folder bound at the same path and the working directory, no
network with ``--no-network``, the memory limit, and the PID namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crunchclient.settings.config import ClientConfig
from crunchclient.worker.workflow import containers, runners, sandbox
from crunchclient.worker.workflow.containers import (
    Apptainer,
    Charliecloud,
    Docker,
    Podman,
    Request,
)
from crunchclient.worker.workflow.runners import Runner, container_env
from crunchclient.worker.workflow.sandbox import Hiding

WORKDIR = Path("/scratch/crunch-work/proj/one")
ENV = {"CRUNCH_DATASET": "proj:one", "CRUNCH_CORES": "4"}
HOST_ENV = {
    **ENV, "CRUNCH_TOKEN_LIKE": "x", "HOME": "/home/me", "PATH": "/usr/bin",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-s3cr3t", "LANG": "C.UTF-8", "KEEP_ME": "passed",
}  # fmt: skip


def request(**changes: object) -> Request:
    fields: dict[str, object] = {
        "image": "docker://rocker/r-ver:4.4", "command": ["bash", f"{WORKDIR}/.crunch/script.sh"],
        "workdir": WORKDIR, "env": dict(ENV), "cores": 4,
    }  # fmt: skip
    fields.update(changes)
    return Request(**fields)  # type: ignore[arg-type]


def pairs(argv: list[str], flag: str) -> list[str]:
    """The values that follow ``flag`` each time it appears (``--env A=1 --env B=2``)."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def prefixed(argv: list[str], flag: str) -> list[str]:
    """The values of ``flag=VALUE`` words (``--volume=/a:/a``)."""
    return [word.split("=", 1)[1] for word in argv if word.startswith(flag + "=")]


def after_image(argv: list[str], image: str) -> list[str]:
    return argv[argv.index(image) + 1 :]


# --------------------------------------------------------------------------- apptainer


def test_apptainer_command(tmp_path: Path) -> None:
    runtime = Apptainer("/usr/bin/apptainer", tmp_path)
    argv = runtime.command(request(image="/images/r.sif", memory="8g"))
    assert argv[:2] == ["/usr/bin/apptainer", "exec"]
    # its own PIDs and IPC, no home, none of the host's environment
    assert {"--contain", "--cleanenv", "--pid", "--ipc", "--no-home"} <= set(argv)
    assert pairs(argv, "--bind") == [str(WORKDIR)]
    assert pairs(argv, "--pwd") == [str(WORKDIR)]
    assert pairs(argv, "--env") == ["CRUNCH_CORES=4", "CRUNCH_DATASET=proj:one"]
    assert pairs(argv, "--memory") == ["8g"] and pairs(argv, "--cpus") == ["4"]
    assert "--net" not in argv and "--network" not in argv  # the network stays on
    assert after_image(argv, "/images/r.sif") == request().command


def test_apptainer_without_network_and_with_binds(tmp_path: Path) -> None:
    runtime = Apptainer("/usr/bin/singularity", tmp_path)
    argv = runtime.command(request(network=False, binds=(Path("/ref"),)))
    assert "--net" in argv and pairs(argv, "--network") == ["none"]
    assert pairs(argv, "--bind") == [str(WORKDIR), "/ref"]
    assert "--memory" not in argv
    # a docker:// image runs as the .sif it was converted to, in the cache
    local = runtime.local("docker://rocker/r-ver:4.4")
    assert Path(local).parent == tmp_path and local.endswith(".sif")
    assert after_image(argv, local) == request().command


# ------------------------------------------------------------------------ podman, docker


def test_podman_command(tmp_path: Path) -> None:
    argv = Podman("/usr/bin/podman", tmp_path).command(request(memory="2g"))
    assert argv[:3] == ["/usr/bin/podman", "run", "--rm"]
    assert "--init" in argv and "--pull=never" in argv  # reaps the workflow's children
    assert prefixed(argv, "--volume") == [f"{WORKDIR}:{WORKDIR}"]
    assert prefixed(argv, "--workdir") == [str(WORKDIR)]
    assert pairs(argv, "--env") == ["CRUNCH_CORES=4", "CRUNCH_DATASET=proj:one"]
    assert prefixed(argv, "--cpus") == ["4"] and prefixed(argv, "--memory") == ["2g"]
    assert "--userns=keep-id" in argv  # the user's own uid, rootless
    assert not [word for word in argv if word.startswith("--network")]
    assert after_image(argv, "rocker/r-ver:4.4") == request().command  # docker:// dropped


def test_podman_without_network(tmp_path: Path) -> None:
    argv = Podman("/usr/bin/podman", tmp_path).command(
        request(network=False, binds=(Path("/ref"),))
    )
    assert "--network=none" in argv
    assert prefixed(argv, "--volume") == [f"{WORKDIR}:{WORKDIR}", "/ref:/ref"]
    assert not prefixed(argv, "--memory")


def test_docker_command_runs_as_the_user(tmp_path: Path) -> None:
    import os

    argv = Docker("/usr/bin/docker", tmp_path).command(request(network=False, memory="1g"))
    assert argv[:3] == ["/usr/bin/docker", "run", "--rm"]
    assert f"--user={os.getuid()}:{os.getgid()}" in argv
    assert "--userns=keep-id" not in argv  # podman's flag: docker refuses it
    assert "--network=none" in argv and prefixed(argv, "--memory") == ["1g"]
    assert prefixed(argv, "--volume") == [f"{WORKDIR}:{WORKDIR}"]
    assert prefixed(argv, "--workdir") == [str(WORKDIR)]
    assert pairs(argv, "--env") == ["CRUNCH_CORES=4", "CRUNCH_DATASET=proj:one"]


# ------------------------------------------------------------------------- charliecloud


def test_charliecloud_command(tmp_path: Path) -> None:
    image = tmp_path / "image"
    argv = Charliecloud("/usr/bin/ch-run", tmp_path).command(
        request(image=str(image), binds=(Path("/ref"),))
    )
    assert argv[:2] == ["/usr/bin/ch-run", "--unset-env=*"]  # none of the client's variables
    assert prefixed(argv, "--bind") == [str(WORKDIR), "/ref"]  # HOST alone: the same path
    assert prefixed(argv, "--cd") == [str(WORKDIR)]
    assert after_image(argv, str(image)) == ["--", *request().command]
    assert not Charliecloud.own_pids  # so it runs inside the sandbox (below)


def test_charliecloud_sets_each_variable_in_one_word(tmp_path: Path) -> None:
    argv = Charliecloud("/usr/bin/ch-run", tmp_path).command(request(image="/img"))
    assert prefixed(argv, "--set-env") == ["CRUNCH_CORES=4", "CRUNCH_DATASET=proj:one"]
    assert "--set-env" not in argv


def test_charliecloud_image_is_a_directory(tmp_path: Path) -> None:
    from crunchclient.exceptions import ConfigurationError

    runtime = Charliecloud("/usr/bin/ch-run", tmp_path / "cache")
    with pytest.raises(ConfigurationError, match="not a Charliecloud image directory"):
        runtime.prepare(str(tmp_path / "missing"))
    image = tmp_path / "image"
    (image / "bin").mkdir(parents=True)
    (image / "bin" / "sh").symlink_to("busybox")
    (image / "only").write_text("in the image\n")
    digest = runtime.prepare(str(image))
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert runtime.prepare(str(image)) == digest
    (image / "only").write_text("changed\n")
    assert runtime.prepare(str(image)) != digest


# ------------------------------------------------------------------------------ sandbox


def hiding(tmp_path: Path, **changes: object) -> Hiding:
    home = tmp_path / "home"
    directory = tmp_path / "outside" / "crunch-work"
    workdir = directory / "proj" / "one"
    settings = home / "storage.toml"
    for folder in (home, workdir):
        folder.mkdir(parents=True, exist_ok=True)
    settings.write_text("[STORAGES.default]\n")
    fields: dict[str, object] = {
        "workdir": workdir, "directory": directory, "masked": (settings,), "home": home,
        "network": True,
    }  # fmt: skip
    fields.update(changes)
    return Hiding(**fields)  # type: ignore[arg-type]


def mounts(argv: list[str]) -> list[tuple[str, ...]]:
    """The mount options in order: (flag, source, destination) or (--tmpfs, path)."""
    found: list[tuple[str, ...]] = []
    for i, word in enumerate(argv[: argv.index("--")]):
        if word in ("--bind", "--ro-bind", "--dev-bind"):
            found.append((word, argv[i + 1], argv[i + 2]))
        elif word in ("--tmpfs", "--proc"):
            found.append((word, argv[i + 1]))
    return found


def test_bwrap_command_hides_home_directory_and_settings(tmp_path: Path) -> None:
    given = hiding(tmp_path, binds=(tmp_path / "ref",))
    (tmp_path / "ref").mkdir()
    argv = sandbox.bwrap_command(["bash", "script.sh"], given)
    home, directory, workdir = str(given.home), str(given.directory), str(given.workdir)
    settings = str(given.masked[0])
    assert argv[argv.index("--") + 1 :] == ["bash", "script.sh"]
    assert "--unshare-pid" in argv and "--die-with-parent" not in argv  # a TERM trap still runs
    assert "--unshare-net" not in argv  # the network stays on by default
    order = mounts(argv)
    assert order[0] == ("--ro-bind", "/", "/")  # the rest of the file system: read-only
    assert ("--proc", "/proc") in order and ("--tmpfs", "/tmp") in order
    assert ("--tmpfs", home) in order and ("--tmpfs", directory) in order
    assert ("--ro-bind", "/dev/null", settings) in order
    assert ("--bind", str(tmp_path / "ref"), str(tmp_path / "ref")) in order
    # the dataset's folder: writable at the same path, the working directory, and bound
    # after the tmpfs that hides its siblings (a later mount covers an earlier one)
    assert order[-1] == ("--bind", workdir, workdir)
    assert order.index(("--tmpfs", directory)) < order.index(("--bind", workdir, workdir))
    assert order.index(("--tmpfs", home)) < order.index(("--ro-bind", "/dev/null", settings))
    assert pairs(argv, "--chdir") == [workdir]
    assert "--setenv" not in argv and "--clearenv" not in argv  # the env: launch()'s


def test_bwrap_command_without_network(tmp_path: Path) -> None:
    argv = sandbox.bwrap_command(["true"], hiding(tmp_path, network=False))
    assert "--unshare-net" in argv[: argv.index("--")]


def test_bwrap_command_skips_a_masked_file_that_is_not_there(tmp_path: Path) -> None:
    argv = sandbox.bwrap_command(["true"], hiding(tmp_path, masked=(tmp_path / "gone.toml",)))
    assert "/dev/null" not in argv[: argv.index("--")]


# ---------------------------------------------------------------- the runner's launch()


def config(tmp_path: Path, **changes: object) -> ClientConfig:
    return ClientConfig(
        url="http://crunch.test", token="t0ken-t0ken-t0ken", storage=None,
        directory=tmp_path / "crunch-work", pass_env=("KEEP_ME",), **changes,  # type: ignore[arg-type]
    )  # fmt: skip


def test_container_env_keeps_crunch_and_pass_env_only(tmp_path: Path) -> None:
    podman = Podman("/usr/bin/podman", tmp_path)
    assert container_env(HOST_ENV, ("KEEP_ME",), podman) == {
        **ENV, "CRUNCH_TOKEN_LIKE": "x", "KEEP_ME": "passed",
    }  # fmt: skip
    charliecloud = Charliecloud("/usr/bin/ch-run", tmp_path)
    kept = container_env(HOST_ENV, (), charliecloud)
    assert kept["PATH"] == runners.CONTAINER_PATH and kept["HOME"] == "/tmp"  # not the client's
    assert "AWS_SECRET_ACCESS_KEY" not in kept and "LANG" not in kept


def test_launch_charliecloud_runs_inside_the_sandbox(tmp_path: Path) -> None:
    runner = Runner(config(tmp_path, isolation="sandbox"), str(tmp_path / "image"))
    runner.runtime = Charliecloud("/usr/bin/ch-run", tmp_path)
    runner.digest = "sha256:" + "0" * 64
    workdir = tmp_path / "crunch-work" / "proj" / "one"
    workdir.mkdir(parents=True)
    launch = runner.launch(["sh", "script.sh"], HOST_ENV, workdir)
    assert launch.argv[0].endswith("bwrap") and "--unshare-pid" in launch.argv
    inner = launch.argv[launch.argv.index("--") + 1 :]
    assert inner[0] == "/usr/bin/ch-run" and inner[-2:] == ["sh", "script.sh"]
    assert not [word for word in inner if "AWS_SECRET" in word or "s3cr3t" in word]
    assert launch.env["USER"]  # ch-run refuses to start without it
    assert launch.image_digest == runner.digest and "in the sandbox" in launch.where


def test_launch_podman_has_its_own_pids_so_no_sandbox(tmp_path: Path) -> None:
    runner = Runner(config(tmp_path, isolation="sandbox", network=False, memory="3g"), "alpine")
    runner.runtime = Podman("/usr/bin/podman", tmp_path)
    launch = runner.launch(["sh", "x"], HOST_ENV, tmp_path)
    assert launch.argv[:2] == ["/usr/bin/podman", "run"]
    assert "--network=none" in launch.argv and "--memory=3g" in launch.argv
    assert pairs(launch.argv, "--env") == [
        "CRUNCH_CORES=4", "CRUNCH_DATASET=proj:one", "CRUNCH_TOKEN_LIKE=x", "KEEP_ME=passed",
    ]  # fmt: skip


def test_launch_without_isolation_is_the_command_itself(tmp_path: Path) -> None:
    launch = Runner(config(tmp_path, isolation="none")).launch(["bash", "s.sh"], ENV, tmp_path)
    assert (launch.argv, launch.env, launch.where) == (["bash", "s.sh"], ENV, "no isolation")


def test_runtimes_are_tried_in_the_documented_order() -> None:
    from crunchclient.settings.config import RUNTIMES

    assert tuple(containers.RUNTIMES) == RUNTIMES == (
        "apptainer", "podman", "docker", "charliecloud",
    )  # fmt: skip
