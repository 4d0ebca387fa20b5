"""``crunch loop --dry-run``, as ``snakemake -n``: what the loop would claim and why, and
whether this node could run it (the workflow's tool, the storage, the working directory).

It only reads: no claim, no status, no attempt spent, no folder made. The server has no
endpoint for its claim queue, so the pending datasets are read from the dataset listing
(``GET api/datasets/?project=P&state=pending``, in id order) and put in the server's claim
order here: the highest priority first, then the oldest; a dataset that failed and waits
for its retry delay is skipped, as the server skips it (its ``why`` says so).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from crunchclient.exceptions import ConfigurationError
from crunchclient.server.connection import Connection
from crunchclient.server.wire import ProjectInfo
from crunchclient.settings import bootstrap, config, kinds
from crunchclient.settings.secrets import redact, secret_values
from crunchclient.terminal import remote
from crunchclient.terminal.logs import when
from crunchclient.worker.stages.setup import kind_of, workflow_bytes
from crunchclient.worker.workflow import containers, sandbox

SHOWN = 5  # datasets listed in claim order
READ = 5_000  # pending datasets read at most to sort them
CHECKED = 20  # pending datasets that failed before whose retry delay is asked (why) at most
PROJECTS = 10  # projects whose workflow is checked at most (a loop without --project)
WAITING = "not to be retried before"  # what crunch.services.explain says of a waiting dataset


@dataclass
class Report:
    """The lines a dry run prints and the problems that would stop the loop."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, what: str, ready: str, problem: str | None) -> None:
        if problem is None:
            self.lines.append(f"{what}: ready ({ready}).")
        else:
            self.lines.append(f"{what}: NOT READY: {problem}")
            self.problems.append(what)


def dry_run(opts: dict[str, Any]) -> Report:
    """Everything ``crunch loop`` with these options would check and claim, claiming nothing."""
    report = Report(["Dry run: nothing is claimed and no status is sent."])
    connection = remote.connect(opts)
    project: str | None = opts.get("project")
    infos = {project: connection.project(project)} if project else {}
    queue(connection, project, infos, report)
    path = opts.get("path")
    try:
        path = config.check_workflow_path(path)
    except ConfigurationError as exc:
        report.check("Workflow file (--path)", "", str(exc))
        path = None
    if not infos and opts.get("workflow"):
        kind = kinds.get(opts["workflow"])
        report.check(f"Workflow (--workflow {kind.kind.value})", *tool(kind, None, kind.kind))
    for slug, info in infos.items():
        report.check(f"Workflow of project {slug!r}", *workflow_check(info, opts, path))
    report.check("Isolation", *isolation_check(opts))
    for slug, info in infos.items():
        if info.container:
            report.check(f"Container of project {slug!r}", *container_check(info, opts))
    report.check("Storage", *storage_check(opts))
    directory = (opts.get("directory") or Path("crunch-work")).expanduser().absolute()
    report.check(f"Working directory {str(directory)!r}", *directory_check(directory))
    return report


def pending_of(connection: Connection, project: str | None) -> tuple[list[dict[str, Any]], str]:
    """Up to READ pending datasets (of project) in the server's claim order, and the call."""
    params = {"project": project, "state": "pending"} if project else {"state": "pending"}
    call = f"GET api/datasets/?{urlencode(params)}"
    rows = list(itertools.islice(connection.datasets(**params), READ))
    return sorted(rows, key=lambda row: (-int(row.get("priority") or 0), int(row["id"]))), call


def overview(connection: Connection, slug: str) -> dict[str, Any]:
    return connection.overview(slug)


def queue(
    connection: Connection, project: str | None, infos: dict[str, ProjectInfo], report: Report
) -> None:
    """The queue's lines: counts by project, the first datasets it would claim and why."""
    rows, call = pending_of(connection, project)
    slugs = [project] if project else sorted({str(row["project"]) for row in rows})
    overviews = {slug: overview(connection, slug) for slug in slugs}
    for slug, seen in overviews.items():
        retrying = int(seen.get("retrying") or 0)
        waits = (
            f" ({retrying} of them after a failure, waiting to retry until "
            f"{when(seen.get('retry_at'))} at the latest)" if retrying else ""
        )  # fmt: skip
        report.lines.append(
            f"Project {slug!r}: {seen.get('pending', 0)} pending{waits}, "
            f"{seen.get('running', 0)} running."
        )
    read = f"; only the first {READ} were read" if len(rows) >= READ else ""
    report.lines.append(
        "Claim order: the highest priority first, then the oldest, skipping datasets that "
        f"wait to retry (read with {call}, the server has no queue endpoint, sorted here{read})."
    )
    ready: list[dict[str, Any]] = []
    checked = 0
    for row in rows:
        if len(ready) == SHOWN:
            break
        seen = overviews.get(str(row["project"]), {})
        if int(row.get("attempts") or 0) and int(seen.get("retrying") or 0):
            if checked == CHECKED:
                break
            checked += 1
            why = connection.why(str(row["slug"]))
            if WAITING in str(why.get("reason", "")):
                continue
        ready.append(row)
    if not ready:
        report.lines.append("It would claim nothing now: no pending dataset is ready.")
        return
    report.lines.append("It would claim first:")
    for row in ready:
        failed = int(row.get("attempts") or 0)
        again = f", failed {failed} time(s) before" if failed else ""
        report.lines.append(f"  {row['slug']}  priority {row.get('priority', 0)}{again}")
    if not project:
        for slug in sorted({str(row["project"]) for row in ready})[:PROJECTS]:
            infos[slug] = connection.project(slug)


def tool(kind: kinds.Kind, workflow: bytes | None, name: str) -> tuple[str, str | None]:
    """(what runs the workflow, None) when this node has it, else ("", the problem)."""
    try:
        kind.check(name, workflow)
    except ConfigurationError as exc:
        return "", str(exc)
    if isinstance(kind, kinds.Script):
        return f"a bash script: bash is {shutil.which('bash')}", None
    if isinstance(kind, kinds.Snakemake):
        spec = importlib.util.find_spec("snakemake")
        where = os.path.dirname(spec.origin) if spec and spec.origin else "installed"
        return f"a Snakefile: Snakemake is {where}", None
    if workflow is not None and isinstance(kind, kinds.Executable):
        first = workflow.split(b"\n", 1)[0][2:].decode("utf-8", "replace")
        interpreter = kinds.interpreter_of(first) or ""
        found = shutil.which(interpreter) if "/" not in interpreter else interpreter
        return f"an executable: its '#!' line runs {found}", None
    return f"a {kind.kind.value} workflow", None


def workflow_check(
    info: ProjectInfo, opts: dict[str, Any], path: Path | None
) -> tuple[str, str | None]:
    """Whether this node can run the project's workflow, as the loop checks before claiming."""
    try:
        kind = kind_of(opts.get("workflow"), info)
        workflow = workflow_bytes(path, info)
    except ConfigurationError as exc:
        return "", str(exc)
    what = f"Project {info.slug!r} (workflow kind {kind.kind.value!r})"
    return tool(kind, workflow, f"--workflow {opts['workflow']}" if opts.get("workflow") else what)


def isolation_check(opts: dict[str, Any]) -> tuple[str, str | None]:
    """Where workflows would run (--isolation): the sandbox, or why it cannot start."""
    isolation = opts.get("isolation") or "auto"
    if isolation == "none":
        return "workflows run unisolated (--isolation none)", None
    problem = sandbox.sandbox_problem()
    if problem is None:
        return "workflows run in the bubblewrap sandbox", None
    if isolation == "sandbox":
        return "", f"--isolation sandbox: {problem}."
    return f"workflows would run unisolated: {problem}", None


def container_check(info: ProjectInfo, opts: dict[str, Any]) -> tuple[str, str | None]:
    """The project's image and the runtime that runs it are on this node."""
    try:
        cache = opts.get("cache") or Path.home() / ".cache" / "crunch" / "images"
        runtime = containers.find_runtime(opts.get("runtime"), Path(cache), info.container)
        digest = runtime.prepare(info.container)
    except ConfigurationError as exc:
        return "", str(exc)
    return f"{info.container} through {runtime.name}, {digest[:19]}...", None


def storage_check(opts: dict[str, Any]) -> tuple[str, str | None]:
    """The storage settings load and the storage answers: its folder or bucket lists;
    with --transfer server, the server moves the files (its answers were checked above)."""
    try:
        if config.transfer_mode(opts) == "server":
            return "files move through the crunch server (--transfer server)", None
        storage = bootstrap.get_storage()
    except ConfigurationError as exc:
        return "", str(exc)
    where = bootstrap.storage_location(storage)
    try:
        if bucket := getattr(storage, "bucket_name", None):
            prefix = str(getattr(storage, "location", "") or "")
            client = storage.connection.meta.client
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        else:
            storage.listdir("")
    except Exception as exc:  # any backend's error is the storage's answer
        reason = redact(str(exc), secret_values(standalone=bootstrap.is_standalone())).splitlines()[
            0
        ]
        return "", f"{where} cannot be listed ({reason}): check {bootstrap.where_set()}."
    return f"{where} lists", None


def directory_check(directory: Path) -> tuple[str, str | None]:
    """Whether the working directory could be written, without making it."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return "", (
            f"{str(existing)!r} is not a folder you can write to: pass --directory with one."
        )
    return "writable" if existing == directory else "it would be created", None
