"""How many datasets one server hands out and records per second, beside an older main.

    .venv/bin/python -m benchmarks.capacity [--databases sqlite,postgres] [--clients 1,16,64]
        [--datasets 300] [--base db247aa] [--base-first] [--rounds 1] [--no-probe]
        [--slots 1] [--heartbeat 1]

N simulated clients (threads, each with its own requests.Session) each loop: claim
(POST api/projects/<slug>/next/, or api/next/ with --next any), then post the six statuses of
a clean run with the claim id, with no work between, until nothing is pending. The server
is gunicorn (4 workers) serving the testproject on a fresh SQLite file or a fresh PostgreSQL
database beside CRUNCH_BENCH_POSTGRES or DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/postgres). Both this checkout and the worktree of --base
(see benchmarks/harness.py) serve at once, each its own database; for each N the two run
one after the other, on a new project of --datasets datasets each, so drift on a shared
machine hits both alike.

With --slots S (S > 1) each of this checkout's N clients is instead a loop with S slots
talking the batched protocol as ``crunch loop --slots S`` does (benchmarks/clients.py:
claims with ``count``, every held dataset's statuses in one object batch whose ``next``
claims the freed slots' datasets, one renewal of every held claim each --heartbeat
seconds), while the older main's N clients keep its own protocol as above. The summary
then says whether the batched clients reach 3x the older main's datasets/s (issue 27):

    .venv/bin/python -m benchmarks.capacity --clients 16 --slots 8 --base 3d3bccd \
        --datasets 1000 --rounds 3

Prints per run datasets/s, requests/s, HTTP calls per dataset, the server's CPU time per
dataset (user + system of the gunicorn master and workers), on PostgreSQL also its
backends' CPU per dataset, this process's CPU per dataset (the clients' own cost), failed
requests (retried) and whether every dataset completed exactly once (six statuses in
order, state completed, no status refused); then the ratio of datasets/s per (database,
N). Exits 1 if a dataset did not complete exactly once or a call was refused.

With --probe (the default) a second line per run says how long the project page, its
stats call and page 1 of its dataset list take to answer, idle (just before the run, 5
each, median) and under load (one request every 0.25 s from the clients' start until they
finish; median and max), "n/a" where the server does not answer 200: see benchmarks/probe.py.
The probe's requests are not in the clients' requests/s, datasets or client CPU (it has its
own process); the server CPU figure includes them (~4 requests/s, negligible).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks.baseline import completion, create_project, register_datasets
from benchmarks.clients import Slots, Tally, client, loop
from benchmarks.harness import (
    BASE_COMMIT,
    CURRENT,
    Database,
    Server,
    Version,
    base_version,
    database,
    load_average,
    server_env,
)
from benchmarks.probe import Latencies, Probe, median, probe_line

SLOTS_TARGET = 3.0
"""Batched loops' datasets/s over the older main's, on its own protocol (issue 27)."""


@dataclass
class Result:
    version: str
    database: str
    clients: int
    slots: int
    datasets_per_s: float
    requests_per_s: float
    calls_per_dataset: float
    server_cpu_ms: float
    database_cpu_ms: float
    client_cpu_ms: float
    failures: int
    check: dict[str, int]
    refused: list[str]
    idle: Latencies | None = None
    load: Latencies | None = None
    machine_load: float = 0.0

    @property
    def ok(self) -> bool:
        return self.check["wrong"] == 0 and not self.refused

    def line(self) -> str:
        check = "all completed once" if self.ok else f"WRONG {self.check} {self.refused[:3]}"
        clients = f"{self.clients}x{self.slots}" if self.slots > 1 else str(self.clients)
        database = f"PostgreSQL CPU {self.database_cpu_ms:5.1f} ms/dataset  "
        return (
            f"{self.database:<9} N={clients:<5} {self.version:<8} "
            f"{self.datasets_per_s:7.1f} datasets/s {self.requests_per_s:7.1f} requests/s "
            f"{self.calls_per_dataset:5.2f} calls/dataset  "
            f"server CPU {self.server_cpu_ms:6.1f} ms/dataset  "
            f"{database if self.database == 'postgres' else ''}"
            f"client CPU {self.client_cpu_ms:5.1f} ms/dataset  "
            f"failed requests {self.failures}  {check}  [load {self.machine_load:.1f}]"
        ) + (f"\n{probe_line(self.idle, self.load)}" if self.idle and self.load else "")

    def under_load(self, name: str) -> str:
        return median((self.load or {}).get(name, []))


@dataclass
class Target:
    """One checkout's server on one database, with its tokens and a project per N."""

    server: Server
    database: Database
    slots: int = 1
    """Its clients' slots: more than 1, the batched protocol (benchmarks/batched.py)."""
    tokens: tuple[str, str] = ("", "")
    projects: dict[int, str] = field(default_factory=dict)


def prepare(target: Target, args: argparse.Namespace) -> None:
    """Migrate, make the tokens, start the server, and (claiming per project) fill a project
    for each N, so that only claiming and reporting remain for the measured time."""
    version = target.server.version
    version.manage("migrate", "--verbosity", "0", env=target.server.env)
    target.tokens = version.tokens(target.server.env, "capacity")
    target.server.start(timeout=120)
    if args.next == "project":
        for clients in args.clients:
            target.projects[clients] = new_project(target, clients, args)


def new_project(target: Target, clients: int, args: argparse.Namespace) -> str:
    name = f"Capacity {clients} {uuid.uuid4().hex[:8]}"
    slug = create_project(target.server, target.tokens[0], name, "true")
    count = args.datasets_one if clients == 1 else args.datasets
    register_datasets(target.server, target.tokens[0], slug, count)
    return slug


def run(target: Target, clients: int, args: argparse.Namespace) -> Result:
    """One measurement: ``clients`` threads empty the project made for them."""
    server, worker = target.server, target.tokens[1]
    slug = target.projects.pop(clients, "") or new_project(target, clients, args)
    warm_up(server, worker, slug)
    watch = Probe(server, target.tokens[0], slug) if args.probe else None
    next_path = "next/" if args.next == "any" else f"projects/{slug}/next/"
    tally = Tally()
    barrier = threading.Barrier(clients + 1)
    if target.slots > 1:
        project = slug if args.next == "project" else None
        plan = Slots(target.slots, next_path, project, args.heartbeat)
        threads = [
            threading.Thread(target=loop, args=(n, server.url, worker, plan, barrier, tally))
            for n in range(clients)
        ]
    else:
        threads = [
            threading.Thread(
                target=client,
                args=(n, server.url, worker, next_path, barrier, tally, not server.version.legacy),
            )
            for n in range(clients)
        ]
    for thread in threads:
        thread.start()
    cpu_before, own_before = server.cpu_seconds(), time.process_time()
    database_before = target.database.cpu_seconds()
    barrier.wait()
    started = time.perf_counter()
    if watch:
        watch.go.set()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    database_cpu = target.database.cpu_seconds() - database_before
    own = time.process_time() - own_before
    idle, load = watch.finish() if watch else (None, None)
    done = max(tally.datasets, 1)
    return Result(
        version=server.version.name, database=target.database.kind, clients=clients,
        slots=target.slots, datasets_per_s=tally.datasets / wall,
        requests_per_s=tally.requests / wall, calls_per_dataset=tally.requests / done,
        server_cpu_ms=cpu * 1000 / done, database_cpu_ms=database_cpu * 1000 / done,
        client_cpu_ms=own * 1000 / done,
        failures=tally.failures, check=completion(target.database, slug), refused=tally.refused,
        idle=idle, load=load, machine_load=load_average(),
    )  # fmt: skip


def warm_up(server: Server, token: str, slug: str) -> None:
    """Let every worker import and connect once, outside the measured time."""
    headers = {"Authorization": f"Token {token}"}

    def hit() -> None:
        for _ in range(4):
            requests.get(f"{server.url}/api/projects/{slug}/", headers=headers, timeout=30)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure(versions: list[Version], args: argparse.Namespace, folder: Path) -> list[Result]:
    """Set every (database, checkout) up at once, then run each N on each in turn."""
    results: list[Result] = []
    with ExitStack() as stack:
        targets = []
        for kind in args.databases:
            for version in versions:
                name = f"crunch_capacity_{version.name.replace('.', '_')}"
                db = stack.enter_context(database(kind, folder, name))
                env = server_env(**db.settings, CRUNCH_MEDIA_ROOT=str(folder / "media"))
                log = folder / f"gunicorn-{kind}-{version.name}.log"
                server = stack.enter_context(Server(version, env=env, log=log))
                slots = args.slots if version is CURRENT else 1
                targets.append(Target(server, db, slots))
        with ThreadPoolExecutor(len(targets)) as pool:
            for future in [pool.submit(prepare, target, args) for target in targets]:
                future.result()
        print(f"set up in {time.monotonic() - args.started:.0f} s", flush=True)
        for round_ in range(args.rounds):
            for kind in args.databases:
                for clients in args.clients:
                    flip = args.base_first != bool(round_ % 2)
                    for target in targets[::-1] if flip else targets:
                        if target.database.kind == kind:
                            result = run(target, clients, args)
                            print(result.line(), flush=True)
                            results.append(result)
    return results


def summary(results: list[Result], names: list[str]) -> None:
    if len(names) < 2:
        return
    current, base = names
    probed = ["project page", "stats"] if any(r.load for r in results) else []
    print(f"\n{'database':<9} {'N':>3}  {current + ' ds/s':>12} {base + ' ds/s':>14}   ratio  "
          f"{current + ' req/s':>12} {base + ' req/s':>14}  calls/dataset  server CPU ms/dataset"
          + ("  page ms, load   stats ms, load" if probed else ""))  # fmt: skip
    rows: dict[tuple[str, int, str], list[Result]] = defaultdict(list)
    for result in results:
        rows[(result.database, result.clients, result.version)].append(result)
    targets: list[str] = []
    for database_kind, clients in dict.fromkeys((r.database, r.clients) for r in results):
        a, b = rows[(database_kind, clients, current)], rows[(database_kind, clients, base)]
        ds_a, ds_b = (statistics.median(r.datasets_per_s for r in side) for side in (a, b))
        rq_a, rq_b = (statistics.median(r.requests_per_s for r in side) for side in (a, b))
        cpu_a, cpu_b = (statistics.median(r.server_cpu_ms for r in side) for side in (a, b))
        cpu = f"{cpu_a:.1f} vs {cpu_b:.1f}"
        if database_kind == "postgres":
            db_a, db_b = (statistics.median(r.database_cpu_ms for r in side) for side in (a, b))
            cpu += f" (+PG {db_a:.1f} vs {db_b:.1f})"
        calls_a, calls_b = (statistics.median(r.calls_per_dataset for r in side) for side in (a, b))
        calls = f"{calls_a:.2f} vs {calls_b:.2f}"
        load = "".join(f"  {f'{a[-1].under_load(n)} vs {b[-1].under_load(n)}':<15}" for n in probed)
        ratios = [x.datasets_per_s / y.datasets_per_s for x, y in zip(a, b, strict=True)]
        rounds = f"  (by round: {' '.join(f'{r:.2f}' for r in ratios)})" if len(a) > 1 else ""
        print(
            f"{database_kind:<9} {clients:>3}  {ds_a:>12.1f} {ds_b:>14.1f}  {ds_a / ds_b:5.2f}x"
            f"  {rq_a:>12.1f} {rq_b:>14.1f}  {calls:<13}  {cpu:<36}{load}{rounds}".rstrip()
        )
        if a[0].slots > 1:
            met = "met" if ds_a / ds_b >= SLOTS_TARGET else "NOT MET"
            spent = [statistics.median(r.server_cpu_ms + r.database_cpu_ms for r in side)
                     for side in (a, b)]  # fmt: skip
            targets.append(
                f"{database_kind}: {clients} loops x {a[0].slots} slots (batched) at "
                f"{ds_a / ds_b:.2f}x {base}'s datasets/s with its own protocol (rounds "
                f"{min(ratios):.2f}-{max(ratios):.2f}x): target >= {SLOTS_TARGET:g}x, {met}; "
                f"the server's CPU per dataset{' with PostgreSQL' * (database_kind == 'postgres')}"
                f" {spent[1] / spent[0]:.2f}x less"
            )
    if any(len(side) > 1 for side in rows.values()):
        print("(datasets/s, requests/s, calls and CPU: medians over the rounds; page times: last "
              "round)")  # fmt: skip
    for line in targets:
        print(line)


def protocol(version: Version, slots: int) -> str:
    if version is CURRENT and slots > 1:
        return f"batched, {slots} slots a client"
    return "7 calls (claim + six statuses)" if version.legacy else "3 combined calls"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--clients", default="1,16,64", help="comma-separated N")
    parser.add_argument("--datasets", type=int, default=300, help="datasets per run")
    parser.add_argument(
        "--datasets-one",
        type=int,
        default=100,
        help="datasets of the runs with one client (its rate settles sooner)",
    )
    parser.add_argument("--next", choices=["project", "any"], default="project",
                        help="claim with api/projects/<slug>/next/ or api/next/")  # fmt: skip
    parser.add_argument("--base", default=BASE_COMMIT, help="the older commit ('' for none)")
    parser.add_argument("--base-tree", type=Path, help="its worktree (/tmp/crunch-base-<base>)")
    parser.add_argument(
        "--base-first",
        action="store_true",
        help="run the older main first at each N (to see the order's bias)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run each (database, N) this often on each checkout, the order flipped every "
        "other round; the summary gives medians",
    )
    parser.add_argument(
        "--probe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the project page, stats and dataset list, idle and under load",
    )
    parser.add_argument(
        "--slots", type=int, default=1,
        help="this checkout's clients are loops of this many slots on the batched protocol "
        "(more than 1; the older main keeps its own)",
    )  # fmt: skip
    parser.add_argument(
        "--heartbeat", type=float, default=1.0,
        help="with --slots: seconds between a loop's renewals of every claim it holds (the "
        "loop's default is 30)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.slots < 1 or args.heartbeat <= 0:
        parser.error("--slots takes 1 or more, --heartbeat more than 0 seconds")
    args.clients = [int(n) for n in args.clients.split(",")]
    versions = [CURRENT]
    if args.base:
        versions.append(base_version(args.base, args.base_tree))
    args.databases = args.databases.split(",")
    args.started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crunch-capacity-") as folder:
        results = measure(versions, args, Path(folder))
    summary(results, [v.name for v in versions])
    protocols = ", ".join(f"{v.name}: {protocol(v, args.slots)}" for v in versions)
    print(
        f"\nwall {time.monotonic() - args.started:.0f} s; {args.datasets} datasets per run "
        f"({args.datasets_one} with one client); protocols: {protocols}; "
        f"load average {load_average():.1f}"
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
