"""Issue 25: ``crunch submit`` passes the proxy variables on, and needs no storage settings."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crunchclient.launchers import SlurmLauncher, script
from tests.clientkit import CRUNCH, clean_env
from tests.slurm.conftest import Cluster, job_id_of, wait_until

PROXIES = {
    "HTTPS_PROXY": "http://login-1:3128",
    "http_proxy": "http://user:secret@login-1:3128",
    "NO_PROXY": "localhost,.cluster.internal",
}


def without_proxies(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in script.PROXY_VARIABLES}


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal, answering nothing; (exit code, everything shown)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.execve(args[0], args, env)
    seen, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            if b"Storage settings" in seen:
                break  # it prompts and waits for an answer that will not come
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    if b"Storage settings" in seen or time.monotonic() >= deadline:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_dry_run_on_a_terminal_without_storage_settings_does_not_prompt(tmp_path: Path) -> None:
    env = without_proxies(clean_env(HOME=str(tmp_path))) | PROXIES
    code, shown = on_a_terminal(
        [CRUNCH, "submit", "--url", "http://crunch.example", "--token", "t0ken",
         "--project", "p", "--time", "1h", "--dry-run"],
        env, tmp_path,
    )  # fmt: skip
    assert code == 0, shown
    assert "Storage settings" not in shown
    names = "CRUNCH_URL, CRUNCH_TOKEN, HTTPS_PROXY, http_proxy, NO_PROXY"
    assert f"# {names}: from a file only you can read." in shown.splitlines()
    assert "secret" not in shown and "t0ken" not in shown  # the values stay in the file
    assert " -m crunchclient.cli loop --project p " in shown  # the standalone client
    assert not list(tmp_path.rglob("*.env"))


def test_the_private_file_holds_the_proxy_variables_and_storage_settings_only_when_given(
    tmp_path: Path,
) -> None:
    environ = {"PATH": "/usr/bin", "https_proxy": "http://p:3128", "ALL_PROXY": "", **PROXIES}
    request = script.Request(
        project="p", jobs=1, wall=3600, margin=60, url="http://crunch.example", token="t0ken",
        storage_settings=None, directory=tmp_path, proxies=script.proxy_environment(environ),
    )  # fmt: skip
    assert script.env_text(request).splitlines()[1:] == [
        "CRUNCH_URL=http://crunch.example",
        "CRUNCH_TOKEN=t0ken",
        "HTTPS_PROXY=http://login-1:3128",
        "https_proxy=http://p:3128",
        "http_proxy=http://user:secret@login-1:3128",
        "NO_PROXY=localhost,.cluster.internal",
        "ALL_PROXY=''",  # set, if empty: it overrides a node's own default
    ]
    given = script.Request(**{**request.__dict__, "storage_settings": tmp_path / "s.toml"})
    assert f"CRUNCH_STORAGE_SETTINGS={tmp_path / 's.toml'}" in script.env_text(given)
    prepared = script.prepare(given, SlurmLauncher(), standalone=True)
    assert "# CRUNCH_URL, CRUNCH_TOKEN, CRUNCH_STORAGE_SETTINGS, HTTPS_PROXY, https_proxy, " in (
        prepared.script
    )


@pytest.mark.django_db(transaction=True)
def test_tasks_get_the_proxy_variables_and_no_storage_settings(cluster: Cluster) -> None:
    project = cluster.crunch.project("Proxied", "true\n")
    seen = cluster.crunch.work / "seen.txt"
    env = without_proxies(cluster.env) | PROXIES
    c = cluster.crunch
    result = c.run(
        "submit", "--url", c.url, "--token", c.token, "--project", project["slug"],
        "--time", "1m", "--job-name", cluster.job_name, "--directory", str(c.work / "tasks"),
        "--output", str(c.work / "task-%A_%a.out"),
        "--setup", f'echo "$HTTPS_PROXY|$http_proxy|${{CRUNCH_STORAGE_SETTINGS-unset}}" > {seen}',
        env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id_of(result.stdout)
    (env_file,) = (cluster.home / ".crunch" / "submit").glob("*.env")
    assert "CRUNCH_STORAGE_SETTINGS" not in env_file.read_text()
    wait_until(
        seen.exists, timeout=60, what="the task did not start",
        why=lambda: f"queue {cluster.tasks()}; {cluster.outputs()}",
    )  # fmt: skip
    wait_until(lambda: bool(seen.read_text()), 10, "the task wrote nothing", cluster.outputs)
    assert seen.read_text().strip() == "http://login-1:3128|http://user:secret@login-1:3128|unset"
    subprocess.run(["scancel", "--name", cluster.job_name], capture_output=True)
