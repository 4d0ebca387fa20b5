"""``crunch status``, ``crunch ls`` and ``crunch why``: progress, datasets and what holds
one, read from the server without a browser. Each returns lines (or JSON) to print."""

from __future__ import annotations

import io
import json
from typing import Any

from crunch.choices import DatasetState, Stage
from crunchclient.printable import markup, printable
from crunchclient.server.connection import Connection, no_dataset, no_project

STATES = tuple(DatasetState.values)  # pending, running, completed, failed: the overview's order
NOTE_CHARS = 60  # of a note in the ls table
CLIENTS_SHOWN = 20  # clients listed with their slots; the rest are counted


def overviews(connection: Connection, project: str | None) -> list[dict[str, Any]]:
    """The overview of project, or of every project the token may see."""
    slugs = [project] if project else [p["slug"] for p in connection.projects()]
    return [connection.overview(slug, missing=no_project(slug)) for slug in slugs]


def duration(seconds: float | None) -> str:
    """'2h 05m', '4m 10s', '12s'; 'unknown' when nothing finished lately."""
    if seconds is None:
        return "unknown (nothing finished in the last hour)"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def status_lines(overview: dict[str, Any]) -> list[str]:
    """One project's overview as the lines ``crunch status`` prints."""
    total = int(overview["total"])
    counts = ", ".join(f"{overview[state]} {state}" for state in STATES)
    lines = [f"Project {overview['project']!r}: {total} dataset(s): {counts}."]
    if overview.get("paused"):
        lines.append(f"Paused: it hands out nothing; crunch project resume {overview['project']}")
    if retrying := overview.get("retrying"):
        at = str(overview.get("retry_at") or "")[11:16]
        when = f" (the last at {at} UTC)" if at else ""
        lines.append(f"Failed, waiting to retry: {retrying}{when}.")
    if expired := overview.get("lease_expired"):
        lines.append(
            f"Lease expired: {expired} (their clients stopped renewing; they return to the queue "
            "at the next claim, or now with crunch release DATASET)."
        )
    lines.append(
        f"Throughput {overview['throughput_per_hour']:.1f} datasets/h over the last hour; "
        f"time to finish {duration(overview['eta_seconds'])}."
    )
    jobs = overview.get("clients_by_job") or {}
    by_job = ", ".join(
        f"{'no Slurm job' if not job else 'job ' + job}: {count}"
        for job, count in sorted(jobs.items())
    )
    lines.append(f"Live clients: {overview['live_clients']}" + (f" ({by_job})." if by_job else "."))
    lines += slot_lines(overview.get("slots") or [])  # absent from servers before 0.3
    failures = overview.get("failures") or []
    if failures:
        lines.append("Top failures:")
        for group in failures:
            example = f" (e.g. {group['examples'][0]})" if group.get("examples") else ""
            reason = f"{group['reason']}: " if group.get("reason") else ""
            lines.append(f"  {group['count']:>6}  {reason}{group['note']}{example}")
    for need in overview.get("needs") or []:
        wanted = " and ".join(
            f"{need[key]} {unit}" for key, unit in (("memory", "bytes"), ("seconds", "s"))
            if need.get(key) is not None
        )  # fmt: skip
        lines.append(
            f"Waiting for a claim announcing {wanted}: {need['count']} ({need['reason']})."
        )
    return lines


def slot_lines(clients: list[dict[str, Any]]) -> list[str]:
    """Each live loop's slots, busy and free: how full the nodes are kept."""
    if not clients:
        return []
    total = sum(int(client.get("slots") or 0) for client in clients)
    busy = sum(int(client.get("busy") or 0) for client in clients)
    lines = [f"Slots: {busy} of {total} busy in {len(clients)} loop(s):"]
    ordered = sorted(clients, key=lambda c: (str(c.get("slurm_job_id") or ""), client_name(c)))
    for client in ordered[:CLIENTS_SHOWN]:
        slots, used = int(client.get("slots") or 0), int(client.get("busy") or 0)
        lines.append(
            f"  {client_name(client)}: {used} busy, {max(0, slots - used)} free of {slots}"
        )
    if len(ordered) > CLIENTS_SHOWN:
        lines.append(f"  ... and {len(ordered) - CLIENTS_SHOWN} more loop(s)")
    return lines


def client_name(client: dict[str, Any]) -> str:
    """'node-7, job 4242_3': where a loop runs, its Slurm job and array task if any."""
    name = str(client.get("hostname") or client.get("holder") or "a client")
    job = str(client.get("slurm_job_id") or "")
    if task := str(client.get("slurm_array_task_id") or ""):
        job = f"{job}_{task}" if job else job
    return f"{name}, job {job}" if job else name


def status(connection: Connection, project: str | None, *, as_json: bool = False) -> str:
    found = overviews(connection, project)
    if as_json:
        return json.dumps(found[0] if project else found, indent=2)
    if not found:
        return "No projects."
    return "\n\n".join("\n".join(status_lines(overview)) for overview in found)


def datasets(
    connection: Connection, project: str, *, state: str | None = None,
    search: str | None = None, reason: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    connection.project(project)  # a clear error for a project that does not exist
    return list(connection.datasets(project=project, state=state, search=search, reason=reason))


def ls_table(rows: list[dict[str, Any]], *, width: int | None = None) -> str:
    """The datasets as a rich table, rendered to text (no colours when not a terminal)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("dataset", "state", "attempts", "stage", "note"):
        table.add_column(column, no_wrap=column != "note", overflow="fold")
    for row in rows:
        note = (row.get("note") or "").strip().splitlines()
        last = printable(note[-1], lines=False) if note else ""  # then cut: no half escapes
        if last and row.get("last_reason"):
            last = f"{printable(row['last_reason'], lines=False)}: {last}"
        if last and row["state"] == DatasetState.RUNNING:
            last = f"(last run) {last}"  # the note is the previous attempt's, not this one's
        table.add_row(  # server values: rich would obey '[bold]' or fail on '[/x]' in them
            markup(row["slug"]), markup(row["state"]), markup(row["attempts"]),
            stage_name(row.get("stage")),
            markup(last if len(last) <= NOTE_CHARS else last[: NOTE_CHARS - 1] + "\u2026"),
        )  # fmt: skip
    console = Console(width=width or 160, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().rstrip("\n")


def stage_name(stage: Any) -> str:
    """A stage number as the table shows it: Setup, Workflow, Upload; '' for none."""
    return str(Stage(stage).label) if stage in Stage.values else ""


def ls(
    connection: Connection, project: str, *, state: str | None = None,
    search: str | None = None, reason: str | None = None, as_json: bool = False,
    width: int | None = None,
) -> str:  # fmt: skip
    rows = datasets(connection, project, state=state, search=search, reason=reason)
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "No datasets."
    return f"{ls_table(rows, width=width)}\n{len(rows)} dataset(s)."


def why(connection: Connection, slug: str, *, as_json: bool = False) -> str:
    answer = connection.why(slug, missing=no_dataset(slug))
    if as_json:
        return json.dumps(answer, indent=2)
    return f"{answer['reason']}\nTo move it: {answer['command']}"
