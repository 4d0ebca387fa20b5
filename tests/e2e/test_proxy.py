"""Issue 25: a compute node whose only route out is a forward proxy on the login node.

The server listens on 127.0.0.1, but the client is given ``http://crunch-server.test:PORT``,
a name this host cannot resolve. Only tinyproxy, run in a bwrap sandbox whose /etc/hosts
maps that name to 127.0.0.1, can reach it: the client gets through with HTTP_PROXY, and
only with it. Without tinyproxy or bwrap the tests are skipped, except in CI (CI=true),
where they fail.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crunch.models import Dataset
from crunchclient.launchers.script import PROXY_VARIABLES
from tests.clientkit import (
    SIX,
    Crunch,
    clean_env,
    error_line,
    free_port,
    gunicorn_crunch,
    statuses,
)
from tests.e2e.nodekit import tool

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "crunch-server.test"  # resolvable only inside tinyproxy's sandbox
WORKFLOW = "wc -w < input.txt > count.txt\n"


@dataclass
class Proxy:
    url: str
    log: Path

    def requests_for(self, host: str) -> int:
        """How many connections tinyproxy opened to ``host``."""
        return self.log.read_text(errors="replace").count(f"opening connection to {host}:")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """tinyproxy on 127.0.0.1, the only process that resolves HOST."""
    tinyproxy = tool("tinyproxy", "tinyproxy")
    bwrap = tool("bwrap", "bubblewrap")
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST}\n")
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 120\nMaxClients 50\n"
        "LogLevel Info\nConnectPort 443\n"
    )
    log = tmp_path / "tinyproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [bwrap, "--dev-bind", "/", "/", "--ro-bind", str(hosts), "/etc/hosts",
             "--die-with-parent", tinyproxy, "-d", "-c", str(conf)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield Proxy(url=f"http://127.0.0.1:{port}", log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def server(transactional_db: None, media_root: Path, tmp_path: Path) -> Iterator[Crunch]:
    """gunicorn on 127.0.0.1 answering to HOST too (tinyproxy sends the URL's Host)."""
    with gunicorn_crunch(media_root, tmp_path, DJANGO_ALLOWED_HOSTS=HOST) as crunch:
        yield crunch


def node_env(crunch: Crunch, **extra: str) -> dict[str, str]:
    """A compute node's environment: the unresolvable URL, the token, no proxy of this host."""
    env = {k: v for k, v in clean_env().items() if k not in PROXY_VARIABLES}
    port = crunch.url.rsplit(":", 1)[1]
    return env | {"CRUNCH_URL": f"http://{HOST}:{port}", "CRUNCH_TOKEN": crunch.token} | extra


def test_without_the_proxy_the_server_is_out_of_reach(server: Crunch, proxy: Proxy) -> None:
    project = server.project("Unreachable", WORKFLOW)
    env = node_env(server, CRUNCH_STORAGE_SETTINGS=str(server.settings_file))
    result = server.run("loop", "--project", project["slug"], "--quiet", env=env, timeout=60)
    assert result.returncode == 2
    assert error_line(result) == result.stderr.strip()  # one line, nothing else
    port = server.url.rsplit(":", 1)[1]
    assert error_line(result) == (
        f"CommandError: The host '{HOST}' of 'http://{HOST}:{port}/' is not known "
        "(its DNS lookup failed): check --url/CRUNCH_URL."
    )
    assert proxy.requests_for(HOST) == 0


@pytest.mark.parametrize(
    "transfer",
    [
        "direct",
        pytest.param("server"),
    ],
)
def test_crunch_loop_completes_a_project_through_the_proxy(
    server: Crunch, proxy: Proxy, transfer: str
) -> None:
    project = server.project("Proxied", WORKFLOW)
    datasets = [
        server.dataset(project["slug"], f"d{i}", {"input.txt": "one two three\n" * (i + 1)})
        for i in range(2)
    ]
    env = node_env(server, HTTP_PROXY=proxy.url)
    options = ["--transfer", "server"]  # and no storage settings: no file, no AWS_* keys
    if transfer == "direct":
        env["CRUNCH_STORAGE_SETTINGS"] = str(server.settings_file)
        options = []  # direct is the default with storage settings
    result = server.run(
        "loop", "--project", project["slug"], *options, "--quiet", env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Processed 2 dataset(s): 2 completed, 0 failed" in result.stdout
    for i, dataset in enumerate(datasets):
        assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
        assert statuses(dataset["slug"]) == SIX
        assert server.stored(dataset)["count.txt"].strip() == str(3 * (i + 1))
    # every call went through tinyproxy: the project, the first claim, then one call per
    # dataset (its statuses with the next claim)
    assert proxy.requests_for(HOST) >= 2 + len(datasets)
