from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from crunchclient.cli.arguments import (
    add_argument,
    add_url_and_token,
    memory_size,
    positive_duration,
    positive_int,
    seconds,
    wall_time,
)
from crunchclient.exceptions import ConfigurationError
from crunchclient.launchers import SlurmLauncher, script, submit
from crunchclient.launchers.growth import Growth, factor
from crunchclient.launchers.nodes import AUTO, Slots
from crunchclient.management.base import ClientCommand
from crunchclient.settings import bootstrap
from crunchclient.settings.config import ENVIRONMENT, resolve_token, resolve_url
from crunchclient.settings.sizes import memory_bytes

SCHEDULER_OPTIONS = ("partition", "account", "qos", "cpus_per_task", "mem", "gres", "constraint")


def slot_count(text: str) -> int | None:
    """--slots: a whole number from 1, or 'auto' (None: the loop fills the node)."""
    if text.strip().lower() == AUTO:
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of slots: use a whole number from 1, or auto."
        ) from None


def growth_of(opts: dict[str, Any], slots: Slots) -> dict[str, Any]:
    """--mem-retry/--time-retry as the request's fields; one-line errors for what cannot work."""
    fields: dict[str, Any] = {"timeout": opts["timeout"]}
    if opts["mem_ceiling"] and not opts["mem_retry"]:
        raise ConfigurationError("--mem-ceiling needs --mem-retry (e.g. --mem-retry x2).")
    if opts["time_ceiling"] and not opts["time_retry"]:
        raise ConfigurationError("--time-ceiling needs --time-retry (e.g. --time-retry x2).")
    if opts["mem_retry"]:
        if slots.given:
            raise ConfigurationError(
                "--mem-retry gives single-dataset tasks more memory: pass it without --slots."
            )
        if not opts["mem"] or opts["mem"].strip() == "0":
            raise ConfigurationError(
                "--mem-retry needs --mem, the first tasks' memory (e.g. --mem 8G --mem-retry x2)."
            )
        base = memory_bytes(opts["mem"])
        ceiling = memory_bytes(opts["mem_ceiling"]) if opts["mem_ceiling"] else None
        if ceiling is not None and ceiling <= base:
            raise ConfigurationError(
                f"--mem-ceiling {opts['mem_ceiling']} is not more than --mem {opts['mem']}: "
                "pass a larger ceiling."
            )
        fields |= {"memory": base, "memory_growth": Growth(base, opts["mem_retry"], ceiling)}
    if opts["time_retry"]:
        if opts["timeout"] is None:
            raise ConfigurationError(
                "--time-retry needs --timeout, the first tasks' limit per dataset (e.g. "
                "--timeout 30m --time-retry x2)."
            )
        base = int(opts["timeout"])
        ceiling = int(opts["time_ceiling"]) if opts["time_ceiling"] else None
        if ceiling is not None and ceiling <= base:
            raise ConfigurationError(
                "--time-ceiling is not longer than --timeout: pass a longer one."
            )
        fields["time_growth"] = Growth(base, opts["time_retry"], ceiling)
    return fields


class Command(ClientCommand):
    help = (
        "Submit a Slurm job array whose tasks each run 'crunch loop --project P' sized to the "
        "job's wall time; with --keep, stay and keep tasks queued while datasets are pending. "
        "The URL, token, storage settings (when given) and this shell's proxy variables "
        "(HTTPS_PROXY, HTTP_PROXY, NO_PROXY, ALL_PROXY, either case) reach the tasks through "
        "a file only you can read (under ~/.crunch/submit/), never on a command line or in "
        "the script."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument(
            "--jobs", type=positive_int, metavar="N",
            help="Tasks in the job array (default 1; with --keep, the most submitted at once).",
        )  # fmt: skip
        parser.add_argument(
            "--time", type=wall_time, required=True, metavar="DURATION",
            help="Wall time of each task, e.g. 2h, 90m, 1h30m or Slurm's 1:30:00.",
        )  # fmt: skip
        parser.add_argument(
            "--margin", type=wall_time, metavar="DURATION",
            help="Time kept free at the end: the loop claims nothing that would not finish "
            "before it, and Slurm signals the task then, so a running dataset is released "
            "without spending an attempt (default a tenth of --time, 10s to 5m; Slurm may "
            "signal up to a minute early).",
        )  # fmt: skip
        parser.add_argument(
            "--keep", type=positive_int, metavar="M",
            help="Stay running: keep up to M tasks queued or running while the project has "
            "pending datasets, submitting more as earlier ones end; exit when nothing is "
            "pending or running.",
        )  # fmt: skip
        parser.add_argument(
            "--poll", type=seconds, default=30.0, metavar="SECONDS",
            help="With --keep: seconds between looks at the queue and the project (default 30).",
        )  # fmt: skip
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the job script; submit nothing."
        )
        slurm = parser.add_argument_group("Slurm (passed to sbatch)")
        slurm.add_argument("--partition", help="sbatch --partition.")
        slurm.add_argument("--account", help="sbatch --account.")
        slurm.add_argument("--qos", help="sbatch --qos.")
        slurm.add_argument(
            "--cpus-per-task", type=positive_int, metavar="N",
            help="sbatch --cpus-per-task; also the workflow's --cores (with --slots, "
            "--cores-per-slot is).",
        )  # fmt: skip
        slurm.add_argument("--mem", help="sbatch --mem, e.g. 8G.")
        slurm.add_argument("--gres", help="sbatch --gres, e.g. gpu:1.")
        slurm.add_argument("--constraint", help="sbatch --constraint.")
        slurm.add_argument(
            "--output", metavar="PATTERN",
            help="sbatch --output (default crunch-%%x-%%A_%%a.out in this folder).",
        )  # fmt: skip
        slurm.add_argument(
            "--sbatch-arg", action="append", default=[], metavar="ARG",
            help="Any other sbatch option, e.g. --sbatch-arg=--mail-type=END (repeatable).",
        )  # fmt: skip
        slurm.add_argument(
            "--job-name", metavar="NAME", help="sbatch --job-name (default crunch-PROJECT)."
        )
        nodes = parser.add_argument_group(
            "whole nodes (each task one node running one loop of several slots)"
        )
        nodes.add_argument(
            "--slots", type=slot_count, default=0, metavar="N",  # 0: not given
            help="Datasets each task runs at once, in one 'crunch loop --slots N'; N may be "
            "'auto', which fills the node (its "
            "CPUs divided by --cores-per-slot, capped by its GPUs divided by --gpus-per-slot). "
            "Without --exclusive the task asks for N x --cores-per-slot CPUs; 'auto' needs "
            "--exclusive or --cpus-per-task.",
        )  # fmt: skip
        nodes.add_argument(
            "--exclusive", action="store_true",
            help="sbatch --exclusive: each task has its node to itself (and, unless --mem or "
            "--mem-per-slot say otherwise, all of its memory: --mem=0).",
        )  # fmt: skip
        nodes.add_argument(
            "--nodes", type=positive_int, metavar="K",
            help="Tasks in the job array, each a whole node (with --slots or --exclusive; "
            "instead of --jobs).",
        )  # fmt: skip
        nodes.add_argument(
            "--cores-per-slot", type=positive_int, metavar="C",
            help="Each slot's cores: its workflow's --cores (default 1).",
        )  # fmt: skip
        nodes.add_argument(
            "--gpus-per-slot", type=positive_int, metavar="G",
            help="GPUs of each slot, its own; the task asks for slots x G (--gres=gpu:N).",
        )  # fmt: skip
        nodes.add_argument(
            "--mem-per-slot", type=memory_size, metavar="SIZE",
            help="Each slot's memory limit (e.g. 8g) where the runner enforces one; the task "
            "asks for slots x SIZE (sbatch --mem).",
        )  # fmt: skip
        more = parser.add_argument_group(
            "more memory or time for datasets that ran out (see 'Failures and retries')"
        )
        more.add_argument(
            "--mem-retry", type=factor, metavar="xF",
            help="Datasets whose last run ran out of memory get tasks of their own with --mem "
            "times F (e.g. x2), again for each time they run out, up to --mem-ceiling; "
            "submitted as they appear (with --keep, each round). Needs --mem.",
        )  # fmt: skip
        more.add_argument(
            "--mem-ceiling", type=memory_size, metavar="SIZE",
            help="The most memory --mem-retry asks for (e.g. 64G; default: no ceiling).",
        )  # fmt: skip
        more.add_argument(
            "--timeout", type=positive_duration, metavar="DURATION",
            help="The loop's --timeout: how long one dataset's workflow may run (e.g. 30m).",
        )  # fmt: skip
        more.add_argument(
            "--time-retry", type=factor, metavar="xF",
            help="Datasets whose last run passed --timeout get tasks with --timeout (and "
            "--time) times F, up to --time-ceiling. Needs --timeout.",
        )  # fmt: skip
        more.add_argument(
            "--time-ceiling", type=positive_duration, metavar="DURATION",
            help="The longest --timeout --time-retry gives (default: no ceiling).",
        )  # fmt: skip
        task = parser.add_argument_group("each task")
        task.add_argument(
            "--setup", action="append", default=[], metavar="CMD",
            help="A shell line run before the loop, e.g. 'module load python' or "
            "'source venv/bin/activate' (repeatable, in order).",
        )  # fmt: skip
        task.add_argument(
            "--directory", type=Path, default=Path("crunch-work"),
            help="The loop's working directory (default ./crunch-work, made absolute).",
        )  # fmt: skip
        task.add_argument(
            "--wait", type=seconds, default=30.0, metavar="SECONDS",
            help="The loop's --wait: when nothing is pending but datasets are held, look "
            "again after SECONDS (default 30).",
        )  # fmt: skip
        task.add_argument(
            "--loop-arg", action="append", default=[], metavar="ARG",
            help="Any other 'crunch loop' option, e.g. --loop-arg=--cleanup (repeatable).",
        )  # fmt: skip
        server = parser.add_argument_group("server and storage (written to the private file)")
        add_url_and_token(server)
        add_argument(
            server, "--storage-settings", metavar="PATH",
            envvar=ENVIRONMENT["storage_settings"],
            help="TOML or JSON file with the server's storage settings (standalone 'crunch' "
            "only); without it, the tasks move files through the server.",
        )  # fmt: skip

    def handle(self, *args: Any, **opts: Any) -> None:
        wall = opts["time"]
        margin = opts["margin"] if opts["margin"] is not None else script.default_margin(wall)
        slots = Slots(
            given=opts["slots"] != 0, count=opts["slots"] if opts["slots"] != 0 else 1,
            cores=opts["cores_per_slot"],
            gpus=opts["gpus_per_slot"], memory=opts["mem_per_slot"],
            exclusive=opts["exclusive"], nodes=opts["nodes"],
        )  # fmt: skip
        slots.check(cpus_per_task=opts["cpus_per_task"], gres=opts["gres"], jobs=opts["jobs"])
        jobs = opts["nodes"] or opts["jobs"] or opts["keep"] or 1
        scheduler = {name: opts[name] for name in SCHEDULER_OPTIONS if opts[name] is not None}
        scheduler["output"] = opts["output"] or str(Path("crunch-%x-%A_%a.out").absolute())
        standalone = bootstrap.is_standalone()
        settings_file = bootstrap.PROCESS.configured_from
        request = script.Request(
            project=opts["project"], jobs=jobs, wall=wall, margin=margin,
            url=resolve_url(opts), token=resolve_token(opts),
            storage_settings=settings_file.absolute() if settings_file else None,
            directory=opts["directory"].expanduser().absolute(), wait=opts["wait"],
            cores=opts["cpus_per_task"], loop_args=opts["loop_arg"], setup=opts["setup"],
            scheduler=scheduler, extra=opts["sbatch_arg"], name=opts["job_name"],
            proxies=script.proxy_environment(os.environ), slots=slots,
        )  # fmt: skip
        request = replace(request, **growth_of(opts, slots))
        submit.check_request(request)
        submit.submit(
            request, SlurmLauncher(), standalone=standalone, dry_run=opts["dry_run"],
            keep=opts["keep"], poll_seconds=opts["poll"], report=self.stdout.write,
        )  # fmt: skip
