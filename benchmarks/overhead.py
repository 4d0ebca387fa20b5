"""What one `crunch loop` spends per dataset beyond the work, beside an older main.

    .venv/bin/python -m benchmarks.overhead [--datasets 50] [--base db247aa] [--warm-up 20]
        [--profile FOLDER] [--rounds 1]

For this checkout and the worktree of --base (see benchmarks/harness.py): gunicorn
(4 workers, an access log) serves the testproject on a fresh SQLite file with local
storage; a project whose workflow is ``true`` gets --datasets empty datasets; one real
``crunch loop`` (the console script, a subprocess, with that checkout's code) processes
them all, after a loop over --warm-up datasets of another project that is not measured
(each gunicorn worker's first calls load the views and connect: 0.4 s each). Prints
seconds per dataset (the loop's wall time / datasets, and the same from the first Setup
Start to the last Upload Success, which leaves out start-up), the HTTP calls per dataset
by kind, the server's time per dataset (answering, from the access log;
CPU of the gunicorn processes), the client's CPU per dataset (with its workflows), beside
the time of as many ``bash -c true`` runs measured in the same run. --profile FOLDER runs
each loop under cProfile and leaves <FOLDER>/<version>.prof.

Exits 1 if the loop failed or a dataset did not complete exactly once.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.baseline import completion, create_project, register_datasets, status_times
from benchmarks.harness import (
    BASE_COMMIT,
    CRUNCH,
    CURRENT,
    Database,
    Server,
    Version,
    base_version,
    load_average,
    server_env,
    write_storage_settings,
)

TARGET = 0.04  # seconds per dataset, issue 15
CALL_SHAPES = [
    (re.compile(r"^/api/projects/[^/]+/next/$"), "/api/projects/<slug>/next/"),
    (re.compile(r"^/api/datasets/[^/]+/"), "/api/datasets/<slug>/..."),
    (re.compile(r"^/api/claims/[^/]+/"), "/api/claims/<id>/..."),
    (re.compile(r"^/api/projects/[^/]+/$"), "/api/projects/<slug>/"),
]


def children_cpu() -> float:
    """User plus system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bash_true(count: int) -> float:
    """Seconds per ``bash -c true`` run: the floor of running any workflow at all."""
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(["bash", "-c", "true"], check=True)
    return (time.perf_counter() - started) / count


@dataclass
class Figures:
    version: str
    wall_per_dataset: float
    span_per_dataset: float
    calls_per_dataset: float
    server_ms_per_dataset: float
    server_cpu_ms_per_dataset: float
    client_cpu_ms_per_dataset: float
    calls: Counter[str]
    check: dict[str, int]
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.check["wrong"] == 0

    def lines(self, datasets: int) -> list[str]:
        check = "all completed once" if self.ok else f"WRONG exit={self.exit_code} {self.check}"
        head = (
            f"{self.version:<8} {self.wall_per_dataset:.3f} s/dataset (loop wall / {datasets}), "
            f"{self.span_per_dataset:.3f} s/dataset (first Setup Start to last Upload Success), "
            f"{self.calls_per_dataset:.1f} HTTP calls/dataset, "
            f"server {self.server_ms_per_dataset:.0f} ms/dataset answering "
            f"(CPU {self.server_cpu_ms_per_dataset:.0f} ms), "
            f"client CPU {self.client_cpu_ms_per_dataset:.0f} ms/dataset  {check}"
        )
        calls = [
            f"         {count / datasets:5.2f}/dataset  {call}"
            for call, count in self.calls.most_common()
        ]
        return [head, *calls]


def call_shape(line: str) -> tuple[str, int]:
    """('POST /api/projects/<slug>/next/ 200', microseconds) of an access-log line."""
    method, path, code, micros = line.split()
    for pattern, shape in CALL_SHAPES:
        if pattern.match(path):
            path = shape
            break
    return f"{method} {path} {code}", int(micros)


def measure(version: Version, args: argparse.Namespace, folder: Path) -> Figures:
    media, work = folder / "media", folder / "work"
    media.mkdir()
    work.mkdir()
    db = Database("sqlite", {"CRUNCH_SQLITE": str(folder / "db.sqlite3")})
    env = server_env(**db.settings, CRUNCH_MEDIA_ROOT=str(media))
    version.manage("migrate", "--verbosity", "0", env=env)
    maintainer, worker = version.tokens(env, "overhead")
    access_log = folder / "access.log"
    server = Server(version, env=env, log=folder / "gunicorn.log", access_log=access_log)
    server.start(timeout=120)
    try:
        slug = create_project(server, maintainer, "Overhead", "true")
        register_datasets(server, maintainer, slug, args.datasets)
        client_env = version.env(
            server_env(
                CRUNCH_URL=server.url,
                CRUNCH_TOKEN=worker,
                CRUNCH_STORAGE_SETTINGS=str(write_storage_settings(folder / "storage.toml", media)),
            )
        )
        if args.warm_up:
            warm_up(server, maintainer, client_env, work, args.warm_up)
        before = len(access_log.read_text().splitlines())
        loop = [str(CRUNCH), "loop", "--project", slug, "--directory", str(work)]
        if args.profile:
            profile = Path(args.profile).resolve() / f"{version.name}.prof"
            profile.parent.mkdir(parents=True, exist_ok=True)
            loop = [sys.executable, "-m", "cProfile", "-o", str(profile), *loop]
        cpu_before, children_before = server.cpu_seconds(), children_cpu()
        started = time.perf_counter()
        result = subprocess.run(
            loop, check=False, env=client_env, cwd=folder, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        client_cpu = children_cpu() - children_before
        server_cpu = server.cpu_seconds() - cpu_before
        time.sleep(0.5)  # the last access-log lines
        if result.returncode:
            print(
                f"{version.name}: crunch loop exited {result.returncode}:\n{result.stderr[-2000:]}"
            )
        lines = access_log.read_text().splitlines()[before:]
    finally:
        server.stop()
    calls: Counter[str] = Counter()
    micros = 0
    for line in lines:
        shape, spent = call_shape(line)
        calls[shape] += 1
        micros += spent
    first, last = status_times(db, slug)
    n = args.datasets
    return Figures(
        version=version.name,
        wall_per_dataset=wall / n,
        span_per_dataset=(last - first) / n,
        calls_per_dataset=len(lines) / n,
        server_ms_per_dataset=micros / 1000 / n,
        server_cpu_ms_per_dataset=server_cpu * 1000 / n,
        client_cpu_ms_per_dataset=client_cpu * 1000 / n,
        calls=calls,
        check=completion(db, slug),
        exit_code=result.returncode,
    )


def warm_up(
    server: Server, token: str, client_env: dict[str, str], work: Path, datasets: int
) -> None:
    """A loop over another project first, so every gunicorn worker has loaded the views,
    connected and answered each kind of call once: the measured loop meets a running
    server, as a loop does but for the first datasets after a deployment."""
    slug = create_project(server, token, "Warm-up", "true")
    register_datasets(server, token, slug, datasets)
    loop = [str(CRUNCH), "loop", "--project", slug, "--directory", str(work / "warm-up")]
    subprocess.run(loop, env=client_env, capture_output=True, check=True)


def summary(figures: list[Figures], versions: list[Version]) -> None:
    """Each checkout's median seconds per dataset over the rounds, and this one's speed
    relative to the older one (its time / ours: above 1 is faster)."""
    medians: dict[str, tuple[float, float]] = {}
    for version in versions:
        mine = [f for f in figures if f.version == version.name]
        wall = statistics.median(f.wall_per_dataset for f in mine)
        span = statistics.median(f.span_per_dataset for f in mine)
        medians[version.name] = (wall, span)
        print(
            f"{version.name:<8} median of {len(mine)}: {wall:.3f} s/dataset (loop wall), "
            f"{span:.3f} s/dataset (first Setup Start to last Upload Success)"
        )
    if len(versions) == 2:
        (wall, span), (old_wall, old_span) = medians.values()
        print(
            f"speed vs {versions[1].name}: {old_wall / wall:.2f}x (wall), "
            f"{old_span / span:.2f}x (span)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--base", default=BASE_COMMIT, help="the older commit ('' for none)")
    parser.add_argument("--base-tree", type=Path, help="its worktree (/tmp/crunch-base-<base>)")
    parser.add_argument("--profile", metavar="FOLDER", help="cProfile each loop into FOLDER")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=20,
        metavar="N",
        help="datasets of a loop run first on another project, not measured (0: a cold server)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each checkout this often, in turns (the older one first every other "
        "round), and print the medians: drift on a shared machine then hits both alike",
    )
    args = parser.parse_args()
    versions = [CURRENT]
    if args.base:
        versions.append(base_version(args.base, args.base_tree))
    bash = bash_true(args.datasets)
    figures = []
    for round_ in range(args.rounds):
        for version in versions[::-1] if round_ % 2 else versions:
            with tempfile.TemporaryDirectory(prefix="crunch-overhead-") as folder:
                figures.append(measure(version, args, Path(folder)))
            print("\n".join(figures[-1].lines(args.datasets)), flush=True)
    bash_after = bash_true(args.datasets)
    if args.rounds > 1:
        summary(figures, versions)
    print(
        f"bash     {bash:.4f} s per 'bash -c true' before the loops, {bash_after:.4f} s after "
        f"({args.datasets} runs each); target {TARGET} s/dataset; load average "
        f"{load_average():.1f}" + (" (under cProfile: slower than without)" if args.profile else "")
    )
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
