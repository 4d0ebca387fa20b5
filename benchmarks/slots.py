"""A whole node's loop (``crunch loop --slots 8``) beside 8 separate loops and one single
loop, on the same server in the same run.

    .venv/bin/python -m benchmarks.slots [--datasets 64] [--slots 8] [--seconds 1]
        [--isolation none] [--warm-up 16]

gunicorn (4 workers, an access log) serves the testproject on a fresh SQLite file with
local storage. Each variant processes its own project of --datasets empty datasets whose
workflow sleeps --seconds: one ``crunch loop --slots N``; N ``crunch loop`` processes at
once; one ``crunch loop``. A loop over --warm-up datasets of another project comes first,
unmeasured. Prints datasets/s (from the loops' start to their end, and from the first Setup
Start to the last Upload Success), HTTP calls per dataset by kind (the access log), the
clients' peak RSS (each loop process with its watchdog, summed over the loops) and their
CPU (with the workflows). Then the issue's targets, each beside its figure: --slots N at
least 90% of the ideal N/--seconds datasets/s, at most 1.5 calls per dataset, less than a
third of the N loops' summed RSS.

Exits 1 if a loop failed or a dataset did not complete exactly once.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.baseline import completion, create_project, register_datasets, status_times
from benchmarks.harness import (
    CRUNCH,
    CURRENT,
    Database,
    Server,
    load_average,
    server_env,
    write_storage_settings,
)
from benchmarks.overhead import children_cpu

SPEED_TARGET = 0.9  # of the ideal datasets/s
CALLS_TARGET = 1.5  # HTTP calls per dataset
RSS_TARGET = 1 / 3  # of the separate loops' summed RSS
SHAPES = [
    (re.compile(r"^/api/projects/[^/]+/next/$"), "/api/projects/<slug>/next/"),
    (re.compile(r"^/api/claims/[^/]+/renew/$"), "/api/claims/<id>/renew/"),
    (re.compile(r"^/api/claims/[^/]+/release/$"), "/api/claims/<id>/release/"),
    (re.compile(r"^/api/projects/[^/]+/$"), "/api/projects/<slug>/"),
    (re.compile(r"^/api/projects/[^/]+/stats/$"), "/api/projects/<slug>/stats/"),
]


@dataclass
class Figures:
    label: str
    processes: int
    wall: float
    span: float
    calls: Counter[str]
    rss: float  # bytes: the peak, summed over the loop processes
    cpu: float  # seconds: the loops' and their workflows'
    check: dict[str, int]
    exit_codes: list[int]

    @property
    def ok(self) -> bool:
        return not any(self.exit_codes) and self.check["wrong"] == 0

    def lines(self, datasets: int) -> list[str]:
        check = "all completed once" if self.ok else f"WRONG exits={self.exit_codes} {self.check}"
        calls = sum(self.calls.values())
        head = (
            f"{self.label:<12} {datasets / self.wall:5.2f} datasets/s (wall {self.wall:.1f}s), "
            f"{datasets / self.span:5.2f} datasets/s (first Setup Start to last Upload "
            f"Success), {calls / datasets:.2f} HTTP calls/dataset, client RSS "
            f"{self.rss / 2**20:.0f} MiB ({self.processes} process(es)), client CPU "
            f"{self.cpu * 1000 / datasets:.0f} ms/dataset  {check}"
        )
        kinds = [
            f"{'':<17}{count / datasets:5.2f}/dataset  {call}"
            for call, count in self.calls.most_common()
        ]
        return [head, *kinds]


class PeakRss(threading.Thread):
    """Samples the loops' RSS (each loop process and its watchdog) until stopped."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peaks = dict.fromkeys(pids, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            for pid in self.pids:
                self.peaks[pid] = max(self.peaks[pid], tree_rss(pid))

    def stop(self) -> float:
        self.done.set()
        self.join()
        return float(sum(self.peaks.values()))


def tree_rss(pid: int) -> int:
    """The RSS of a loop process and of its watchdog (not its workflows)."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children():
            if any("_watchdog.py" in part for part in child.cmdline()):
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return 0


def call_shape(line: str) -> str:
    method, path, code, _ = line.split()
    for pattern, shape in SHAPES:
        if pattern.match(path):
            path = shape
            break
    return f"{method} {path} {code}"


def run_loops(
    commands: list[list[str]], env: dict[str, str], cwd: Path
) -> tuple[float, float, list[int]]:
    """Start every command at once; (wall seconds, summed peak RSS, exit codes)."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for command in commands
    ]  # fmt: skip
    rss = PeakRss([process.pid for process in processes])
    rss.start()
    codes = []
    for process in processes:
        _, err = process.communicate()
        codes.append(process.returncode)
        if process.returncode:
            print(f"a loop exited {process.returncode}: {err[-2000:]}")
    wall = time.perf_counter() - started
    return wall, rss.stop(), codes


@dataclass(frozen=True)
class Bench:
    """The server every variant runs against, and what its loops need."""

    server: Server
    db: Database
    token: str  # a maintainer's, to make the projects
    env: dict[str, str]  # the loops'
    folder: Path

    def measure(
        self, label: str, loops: int, flags: list[str], args: argparse.Namespace
    ) -> Figures:
        """``loops`` processes of ``crunch loop FLAGS`` at once over a new project."""
        server, db, folder = self.server, self.db, self.folder
        slug = create_project(server, self.token, label, f"sleep {args.seconds:g}\n")
        register_datasets(server, self.token, slug, args.datasets)
        loop = [str(CRUNCH), "loop", "--quiet", "--project", slug]
        loop += ["--directory", str(folder / label), "--isolation", args.isolation, *flags]
        log = folder / "access.log"
        time.sleep(0.5)  # the registration's access-log line, written late
        before = len(log.read_text().splitlines())
        cpu = children_cpu()
        wall, rss, codes = run_loops([loop] * loops, self.env, folder)
        cpu = children_cpu() - cpu
        time.sleep(0.5)  # the last access-log lines
        calls = Counter(call_shape(line) for line in log.read_text().splitlines()[before:])
        first, last = status_times(db, slug)
        return Figures(
            label=label, processes=loops, wall=wall, span=last - first, calls=calls, rss=rss,
            cpu=cpu, check=completion(db, slug), exit_codes=codes,
        )  # fmt: skip


def verdicts(slots: Figures, loops: Figures, args: argparse.Namespace) -> list[str]:
    """The issue's three targets, each beside its figure."""
    n, ideal = args.datasets, args.slots / args.seconds
    speed = n / slots.wall / ideal
    span = n / slots.span / ideal
    calls = sum(slots.calls.values()) / n
    rss = slots.rss / loops.rss

    def judged(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    return [
        f"--slots {args.slots}: {speed:.0%} of the ideal {ideal:g} datasets/s from the loop's "
        f"start ({span:.0%} from the first Setup Start); target at least "
        f"{SPEED_TARGET:.0%}: {judged(speed >= SPEED_TARGET)}",
        f"--slots {args.slots}: {calls:.2f} HTTP calls/dataset; target at most "
        f"{CALLS_TARGET:g}: {judged(calls <= CALLS_TARGET)}",
        f"--slots {args.slots}: RSS {slots.rss / 2**20:.0f} MiB, {rss:.0%} of the "
        f"{args.slots} loops' {loops.rss / 2**20:.0f} MiB; target under {RSS_TARGET:.0%}: "
        f"{judged(rss < RSS_TARGET)}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="each workflow's sleep")
    parser.add_argument("--isolation", default="none", help="the loops' --isolation")
    parser.add_argument("--warm-up", type=int, default=16, metavar="N")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crunch-slots-") as name:
        folder = Path(name)
        media = folder / "media"
        media.mkdir()
        db = Database("sqlite", {"CRUNCH_SQLITE": str(folder / "db.sqlite3")})
        env = server_env(**db.settings, CRUNCH_MEDIA_ROOT=str(media))
        CURRENT.manage("migrate", "--verbosity", "0", env=env)
        maintainer, worker = CURRENT.tokens(env, "slots")
        server = Server(
            CURRENT, env=env, log=folder / "gunicorn.log", access_log=folder / "access.log"
        )
        with server.start(timeout=120):
            client_env = server_env(
                CRUNCH_URL=server.url, CRUNCH_TOKEN=worker,
                CRUNCH_STORAGE_SETTINGS=str(write_storage_settings(folder / "storage.toml", media)),
            )  # fmt: skip
            bench = Bench(server, db, maintainer, client_env, folder)
            if args.warm_up:
                warm = argparse.Namespace(**{**vars(args), "datasets": args.warm_up, "seconds": 0})
                bench.measure("warm-up", 1, ["--slots", "4"], warm)
            figures = [
                bench.measure(f"slots-{args.slots}", 1, ["--slots", str(args.slots)], args),
                bench.measure(f"{args.slots}-loops", args.slots, [], args),
                bench.measure("single-loop", 1, [], args),
            ]
    for figure in figures:
        print("\n".join(figure.lines(args.datasets)))
    print("\n".join(verdicts(figures[0], figures[1], args)))
    print(f"load average {load_average():.1f}")
    return 0 if all(figure.ok for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
