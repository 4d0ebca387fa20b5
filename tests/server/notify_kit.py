"""What the notification tests share: a webhook receiver on 127.0.0.1, and real runs.

The receiver is a real HTTP server in a thread; it records every request (headers and
raw body) and answers with the codes a test queues, 200 once they run out.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from crunch.choices import Stage, State
from crunch.models import Notification, NotificationKind, Project
from crunch.services.claims import claim_next
from crunch.services.statuses import record_status
from tests.factories import make_dataset, make_project


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    """Status codes to answer, in order; 200 once none is left."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            code = state.answers.pop(0) if state.answers else 200
            answer = b"receiver is down" if code >= 400 else b"ok"
            self.send_response(code)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def webhook(project: Project, url: str, **fields: Any) -> Notification:
    return Notification.objects.create(
        project=project, kind=NotificationKind.WEBHOOK, url=url, **fields
    )


def failing_project(**fields: Any) -> Project:
    """A project whose datasets fail for good at their first Fail."""
    fields.setdefault("max_attempts", 1)
    return make_project(**fields)


def run(project: Project, *, fail: bool, note: str = "exit 3") -> None:
    """Claim the project's next dataset and end its run: a Workflow Fail or Upload Success."""
    claim = claim_next(holder="node", project=project)
    assert claim is not None, "no dataset to run"
    if fail:
        record_status(
            dataset=claim.dataset.pk, stage=Stage.WORKFLOW, state=State.FAIL, note=note,
            claim_id=claim.id,
        )  # fmt: skip
    else:
        record_status(
            dataset=claim.dataset.pk, stage=Stage.UPLOAD, state=State.SUCCESS, claim_id=claim.id
        )


def datasets(project: Project, count: int) -> None:
    for index in range(count):
        make_dataset(project, name=f"d{index:02}")
