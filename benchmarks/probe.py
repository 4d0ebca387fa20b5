"""How long what a maintainer watches takes to answer while clients load the server.

benchmarks/capacity.py starts one ``Probe`` per run: it times the project page (HTML), the
project's stats call and page 1 of its dataset list, 5 times each on the idle server, then
one request every 0.25 s, the three in turn, from the clients' start until they finish.

The pages take no token (they are Django views with a session), so the project is made
public and the page is read anonymously, which both versions serve alike; the API calls
carry the maintainer's token. The probe runs in a process of its own (spawned: the caller
has threads): in the clients' process, their threads would hold its GIL and add their
time to its figures.
"""

from __future__ import annotations

import itertools
import multiprocessing
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import requests

from benchmarks.harness import Server

PROBED = {
    "project page": "/projects/{slug}/",
    "stats": "/api/projects/{slug}/stats/",
    "datasets": "/api/datasets/?project={slug}",
}
"""What the probe times, by name: the same paths in this checkout and the older main."""
IDLE_REPEATS = 5
INTERVAL = 0.25  # seconds from one request's start to the next's, under load
Latencies = dict[str, list[float]]
"""Milliseconds of the answers (200 only) by name of PROBED."""


def watch(url: str, token: str, slug: str, ready: Any, go: Any, stop: Any,
          out: Connection) -> None:  # fmt: skip
    """Time PROBED idle, set ``ready``; from ``go`` until ``stop`` time one every INTERVAL in
    turn; send (idle, under load). A call without a 200 when idle is not made under load.
    """
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    paths = {name: path.format(slug=slug) for name, path in PROBED.items()}

    def timed(path: str) -> float | None:
        began = time.perf_counter()
        try:
            response = session.get(f"{url}{path}", timeout=60)
        except requests.RequestException:
            return None
        return (time.perf_counter() - began) * 1000 if response.status_code == 200 else None

    idle: Latencies = {name: [] for name in paths}
    for _, name in itertools.product(range(IDLE_REPEATS), paths):
        if (ms := timed(paths[name])) is not None:
            idle[name].append(ms)
    load: Latencies = {name: [] for name in paths}
    ready.set()
    go.wait()
    for name in itertools.cycle([name for name in paths if idle[name]] or [""]):
        if stop.is_set():
            break
        began = time.monotonic()
        if name and (ms := timed(paths[name])) is not None:
            load[name].append(ms)
        stop.wait(max(0.0, INTERVAL - (time.monotonic() - began)))
    out.send((idle, load))


class Probe:
    """One run's probe: made public and timed idle here; ``go`` at the clients' start."""

    def __init__(self, server: Server, token: str, slug: str) -> None:
        response = requests.patch(
            f"{server.url}/api/projects/{slug}/", json={"is_public": True},
            headers={"Authorization": f"Token {token}"}, timeout=30,
        )  # fmt: skip
        if response.status_code >= 400:
            print(f"  (project not made public, {response.status_code}: no page)", flush=True)
        warm_up(server.url, token, slug)
        context = multiprocessing.get_context("spawn")
        self.ready, self.go, self.stop = context.Event(), context.Event(), context.Event()
        self.results, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=watch,
            args=(server.url, token, slug, self.ready, self.go, self.stop, sender),
            daemon=True,
        )
        self.process.start()
        if not self.ready.wait(120):
            self.process.kill()
            raise RuntimeError("the probe did not finish its idle requests within 120 s")

    def finish(self) -> tuple[Latencies, Latencies]:
        """Stop it (its last request may still be under way) and return (idle, under load)."""
        self.stop.set()
        if not self.results.poll(90):
            self.process.kill()
            raise RuntimeError("the probe did not report within 90 s of its stop")
        idle, load = self.results.recv()
        self.process.join(30)
        return idle, load


def warm_up(url: str, token: str, slug: str, threads: int = 8) -> None:
    """Each call twice from 8 threads at once, so that every worker has served it: a worker's
    first page render loads its templates, which the idle figures are not about."""
    headers = {"Authorization": f"Token {token}"}

    def calls(_: int) -> None:
        for path in [*PROBED.values()] * 2:
            requests.get(f"{url}{path.format(slug=slug)}", headers=headers, timeout=60)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(calls, range(threads)))


def median(ms: list[float]) -> str:
    return f"{statistics.median(ms):.0f}" if ms else "n/a"


def probe_line(idle: Latencies, load: Latencies) -> str:
    """'  pages idle/under load (median, max ms): project page 12/35 (80), ...'."""
    parts = []
    for name in PROBED:
        if not idle[name]:
            parts.append(f"{name} n/a")
            continue
        under = f"{median(load[name])} ({max(load[name]):.0f})" if load[name] else "-"
        parts.append(f"{name} {median(idle[name])}/{under}")
    samples = min((len(ms) for ms in load.values() if ms), default=0)
    return f"  pages idle/under load (median, max ms): {', '.join(parts)}; {samples}+ samples each"
