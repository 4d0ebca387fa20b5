"""What a notification says: the JSON a webhook receives, and the e-mail made from it.

Every payload has ``event``, ``project`` (slug, name, url), ``text`` (one line a person
reads: Slack's and Mattermost's incoming webhooks show it as it is) and the event's own
fields. Notes are cut to their first line: a payload is a summary, the page has the rest.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.urls import reverse

from crunch.conf import crunch_settings
from crunch.models import Project, Status

LINE_MAX = 300


def first_line(note: str) -> str:
    line = note.strip().splitlines()[0] if note.strip() else ""
    return line if len(line) <= LINE_MAX else line[: LINE_MAX - 1] + "…"


def page(path: str) -> str:
    """A page's address: absolute with CRUNCH_SITE_URL, else its path."""
    return crunch_settings.SITE_URL.rstrip("/") + path


def project_part(project: Project) -> dict[str, str]:
    return {"slug": project.slug, "name": project.name, "url": page(project.get_absolute_url())}


def finished_payload(
    project: Project, counts: dict[str, int], last: datetime.datetime
) -> dict[str, Any]:
    text = (
        f"Project {project.name} finished: {counts['completed']} of {counts['total']} datasets "
        f"completed, {counts['failed']} failed."
    )
    return {
        "event": "finished", "project": project_part(project), "text": text,
        "datasets": counts, "last_finished": last.isoformat(),
    }  # fmt: skip


def failed_payload(project: Project, listed: list[dict[str, Any]], count: int) -> dict[str, Any]:
    names = ", ".join(row["name"] for row in listed[:5])
    more = f" and {count - 5} more" if count > 5 else ""
    text = f"Project {project.name}: {count} dataset(s) failed for good: {names}{more}."
    datasets = [
        {
            "slug": row["slug"],
            "name": row["name"],
            "attempts": row["attempts"],
            "finished": row["finished"].isoformat(),
            "note": first_line(row["note"]),
            "url": page(reverse("crunch:dataset-detail", kwargs={"slug": row["slug"]})),
        }
        for row in listed
    ]
    return {
        "event": "failed", "project": project_part(project), "text": text, "count": count,
        "datasets": datasets,
    }  # fmt: skip


def spike_payload(project: Project, *, runs: int, failures: list[Status]) -> dict[str, Any]:
    share = len(failures) / runs
    text = (
        f"Project {project.name}: failures spiking, {len(failures)} of the last {runs} runs "
        f"failed ({share:.0%})."
    )
    latest = [
        {
            "dataset": status.dataset.slug,
            "time": status.created.isoformat(),
            "note": first_line(status.note),
        }
        for status in failures[:5]
    ]
    return {
        "event": "spike", "project": project_part(project), "text": text, "runs": runs,
        "failed": len(failures), "latest_failures": latest,
    }  # fmt: skip


def email_of(payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and body of the e-mail made from a payload."""
    subject = f"[crunch] {payload['text']}"
    lines = [payload["text"], "", payload["project"]["url"]]
    if payload["event"] == "failed":
        for entry in payload["datasets"]:
            lines.append(f"- {entry['name']} ({entry['attempts']} attempts): {entry['note']}")
        if payload["count"] > len(payload["datasets"]):
            lines.append(f"... and {payload['count'] - len(payload['datasets'])} more.")
    for entry in payload.get("latest_failures", []):
        lines.append(f"- {entry['dataset']} at {entry['time']}: {entry['note']}")
    return subject[:200].replace("\n", " "), "\n".join(lines) + "\n"
