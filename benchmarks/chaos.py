"""Chaos run: many `crunch loop` clients, kill -9 every few seconds, one server restart.

    .venv/bin/python -m benchmarks.chaos [--datasets 200] [--clients 8] [--slots 4]

gunicorn (4 workers) serves the testproject on a fresh PostgreSQL database (beside
CRUNCH_BENCH_POSTGRES or DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
storage is a local folder. While the clients work, one is killed with SIGKILL every
--kill-every seconds and started again, and the server is stopped for --outage seconds
once. With --slots N each client is one `crunch loop --slots N`, so a kill -9 drops N
datasets at once. At the end it prints
datasets, completed once, duplicates (more than one Upload Success), lost (not completed),
stuck (running or pending), renamed files in storage, kills and wall time, and exits 1 if
anything was duplicated, lost, stuck or renamed.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.harness import (
    CRUNCH,
    CURRENT,
    Database,
    Server,
    clean_env,
    postgres_database,
    session,
    write_storage_settings,
)

WORKFLOW = """\
set -euo pipefail
sleep 0.$((RANDOM % 8 + 2))
wc -w < input.txt > words.txt
echo "processed on $(hostname) pid $$" >> input.txt
"""
RENAMED = re.compile(r"_[A-Za-z0-9]{7}(\.[^/]*)?$")  # Django's get_available_name suffix


class Clients:
    """The `crunch loop` processes, each with its own working folder (its own 'node')."""

    def __init__(self, count: int, *, env: dict[str, str], root: Path, args: argparse.Namespace):
        self.env, self.root, self.args = env, root, args
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self.started = 0

    def start(self, n: int) -> None:
        folder = self.root / f"node{n}"
        folder.mkdir(exist_ok=True)
        command = [
            str(CRUNCH), "loop", "--project", "chaos", "--directory", str(folder),
            "--lease", str(self.args.lease), "--heartbeat", str(self.args.heartbeat),
            "--retry-for", "600", "--wait", "1", "--quiet",
        ]  # fmt: skip
        if self.args.slots > 1:
            command += ["--slots", str(self.args.slots)]
        with (self.root / f"node{n}.log").open("ab") as log:
            self.processes[n] = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        self.started += 1

    def restart_finished(self) -> None:
        for n, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                self.start(n)

    def kill_one(self) -> None:
        alive = [p for p in self.processes if p is not None and p.poll() is None]
        if alive:
            victim = random.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


def count_results(database: Database, media: Path) -> dict[str, int]:
    uploads: dict[int, int] = dict(
        database.query(
            "SELECT d.id, COUNT(s.id) FROM crunch_dataset d LEFT JOIN crunch_status s "
            "ON s.dataset_id = d.id AND s.stage = 3 AND s.state = 2 GROUP BY d.id"
        )
    )
    states: dict[str, int] = dict(
        database.query("SELECT state, COUNT(*) FROM crunch_dataset GROUP BY state")
    )
    (attempts,), *_ = database.query("SELECT COALESCE(SUM(attempts), 0) FROM crunch_dataset")
    renamed = [p for p in media.rglob("*") if p.is_file() and RENAMED.search(p.name)]
    return {
        "datasets": len(uploads),
        "completed once": sum(1 for n in uploads.values() if n == 1),
        "duplicates": sum(1 for n in uploads.values() if n > 1),
        "lost": len(uploads) - states.get("completed", 0),
        "stuck": states.get("running", 0) + states.get("pending", 0),
        "failed": states.get("failed", 0),
        "renamed files": len(renamed),
        "attempts": int(attempts),
    }


def chaos(args: argparse.Namespace) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="crunch-chaos-") as folder,
        postgres_database("crunch_chaos") as database_url,
    ):
        root = Path(folder)
        media = root / "media"
        media.mkdir()
        database = Database("postgres", {"DATABASE_URL": database_url})
        server_env = clean_env(**database.settings, CRUNCH_MEDIA_ROOT=str(media), DJANGO_DEBUG="0")
        CURRENT.manage("migrate", "--verbosity", "0", env=server_env)
        token = CURRENT.manage("crunch_token", "chaos", env=server_env)
        keeper = CURRENT.manage(
            "crunch_token", "chaos-keeper", "--role", "maintainer", env=server_env
        )
        server = Server(env=server_env, log=root / "gunicorn.log").start()
        api = session(keeper)
        api.post(
            f"{server.url}/api/projects/",
            json={"name": "Chaos", "workflow": WORKFLOW, "max_attempts": 20, "retry_delay": 0},
            timeout=30,
        ).raise_for_status()
        for i in range(args.datasets):
            dataset = api.post(
                f"{server.url}/api/datasets/",
                json={"parent": "chaos", "name": f"d{i:04}"},
                timeout=30,
            ).json()
            base = media / dataset["base_file_path"]
            base.mkdir(parents=True)
            (base / "input.txt").write_text(f"dataset {i} " * (i % 50 + 1))

        settings_file = write_storage_settings(root / "storage.toml", media)
        client_env = clean_env(
            CRUNCH_URL=server.url, CRUNCH_TOKEN=token, CRUNCH_STORAGE_SETTINGS=str(settings_file)
        )
        clients = Clients(args.clients, env=client_env, root=root, args=args)
        started = time.monotonic()
        for n in range(args.clients):
            clients.start(n)
        kills = restarts = 0
        next_kill = started + args.kill_every
        deadline = started + args.timeout
        done = 0
        try:
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    stats = api.get(f"{server.url}/api/projects/chaos/stats/", timeout=10).json()
                except requests.RequestException:
                    continue
                done = stats["completed"] + stats["failed"]
                if done >= args.datasets:
                    break
                if not restarts and done >= args.datasets // 3:
                    server.stop()
                    time.sleep(args.outage)
                    server.start()
                    restarts += 1
                if time.monotonic() >= next_kill:
                    clients.kill_one()
                    kills += 1
                    next_kill = time.monotonic() + args.kill_every
                clients.restart_finished()
            wall = time.monotonic() - started
        finally:
            clients.stop()
            server.stop()
        results = count_results(database, media)
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in root.glob("*.log"):
                (Path(args.keep_logs) / log.name).write_bytes(log.read_bytes())
        return {
            **results,
            "kills": kills,
            "server restarts": restarts,
            "client starts": clients.started,
            "slots per client": args.slots,
            "wall seconds": round(wall, 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--slots", type=int, default=1, help="datasets each client runs at once (loop --slots)"
    )
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the server is down")
    parser.add_argument("--lease", type=int, default=8, help="client lease, seconds")
    parser.add_argument("--heartbeat", type=int, default=2, help="client heartbeat, seconds")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--keep-logs", metavar="FOLDER", help="copy the server and client logs here"
    )
    args = parser.parse_args()
    figures = chaos(args)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    bad = figures["duplicates"] or figures["lost"] or figures["stuck"] or figures["renamed files"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
