"""Issue 22, point 19: the client's own behaviour. A heartbeat that cannot keep a lease is
refused; a proxy's page instead of an answer is retried; a token that expired, or whose
role was removed, is named as such, and a permission refused is not a token refused."""

from __future__ import annotations

import datetime
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.utils import timezone

from crunch.models import AccessToken, Dataset, Project, ProjectRole, Status
from tests.clientkit import SIX, Crunch, error_line, statuses
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "sleep 4\necho done > out.txt\n"  # past the Workflow Start (sent 2 s in): time to act
PAGE = b"<html>proxy</html>"


def nothing_claimed() -> None:
    assert list(Dataset.objects.values_list("state", "attempts")) == [("pending", 0)]
    assert not Status.objects.exists()


def workflow_started(slug: str) -> None:
    """Wait until the client reported the dataset's Workflow Start."""
    deadline = time.monotonic() + 30
    while not Status.objects.filter(dataset__slug=slug, stage=2, state=1).exists():
        assert time.monotonic() < deadline, "the workflow never started"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "options, said",
    [
        (("--lease", "60", "--heartbeat", "60"), "--heartbeat 60 is not shorter than --lease 60"),
        (("--lease", "60", "--heartbeat", "90"), "--heartbeat 90 is not shorter than --lease 60"),
        (("--lease", "20"), "--heartbeat 30 is not shorter than --lease 20"),  # the default beat
    ],
)
def test_a_heartbeat_at_or_above_the_lease_is_refused_before_claiming(
    crunch: Crunch, options: tuple[str, ...], said: str
) -> None:
    project = crunch.project("Words", "echo ok > ok.txt\n")
    crunch.dataset(project["slug"], "d1")
    result = crunch.run("next", *options)
    assert result.returncode == 2
    lease = options[1]
    assert error_line(result) == (
        f"CommandError: {said}: every lease would expire before it is renewed; "
        f"pass a --heartbeat below --lease (e.g. {int(lease) // 10})."
    )
    nothing_claimed()


class Proxy(http.server.ThreadingHTTPServer):
    """A proxy in front of the live server that misbehaves as real ones do: it answers the
    first ``pages`` calls with its own HTML page (200) without passing them on, and for the
    first call of each path in ``swallow`` passes it on but answers with its page instead.
    With ``throttled``, its page is a 429 with ``Retry-After: 1``, as when other nodes'
    wrong tokens locked the address out."""

    daemon_threads = True

    def __init__(
        self, target: str, *, pages: int, swallow: set[str], throttled: bool = False
    ) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.throttled = throttled
        self.target = target
        self.pages = pages
        self.swallow = set(swallow)
        self.lock = threading.Lock()
        self.paged: list[str] = []  # "METHOD path (forwarded?)" of each call answered by a page

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def page_instead(self, method: str, path: str) -> tuple[bool, bool]:
        """(answer with the page, pass the call on to the server) for this call."""
        with self.lock:
            if self.pages > 0:
                self.pages -= 1
                self.paged.append(f"{method} {path}")
                return True, False
            for fragment in list(self.swallow):
                if fragment in path:
                    self.swallow.discard(fragment)
                    self.paged.append(f"{method} {path} (passed on)")
                    return True, True
        return False, True


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        page, forward = self.server.page_instead(self.command, self.path)
        if forward:
            headers = {
                name: value for name, value in self.headers.items()
                if name.lower() not in ("host", "content-length", "connection")
            }  # fmt: skip
            answer = requests.request(
                self.command, self.server.target + self.path, data=body, headers=headers,
                timeout=30,
            )  # fmt: skip
            status, kind, content = (
                answer.status_code, answer.headers.get("Content-Type", ""), answer.content
            )  # fmt: skip
        if page:
            status, kind, content = 200, "text/html", PAGE
            if self.server.throttled:
                status, kind, content = 429, "application/json", THROTTLED
        self.send_response(status)
        if page and self.server.throttled:
            self.send_header("Retry-After", "1")
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = relay  # noqa: N815 (http.server's names)


THROTTLED = b'{"detail": "Too many failed token authentications from this address."}'


def serve(server: Proxy) -> Iterator[Proxy]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(crunch: Crunch) -> Iterator[Proxy]:
    yield from serve(Proxy(crunch.url, pages=3, swallow={"/next/", "/statuses/"}))


@pytest.fixture
def throttling(crunch: Crunch) -> Iterator[Proxy]:
    yield from serve(Proxy(crunch.url, pages=2, swallow={"/next/"}, throttled=True))


def test_a_429_is_waited_out_as_the_server_asks_and_the_run_goes_on(
    crunch: Crunch, throttling: Proxy
) -> None:
    project = crunch.project("Words", "echo done > out.txt\n")
    dataset = crunch.dataset(project["slug"], "d1")
    result = crunch.run("next", "--project", "words", "--url", throttling.url, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("waiting 1s as the server asks") == 3
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert statuses(dataset["slug"]) == SIX


def test_a_proxy_page_instead_of_an_answer_is_retried_and_nothing_is_done_twice(
    crunch: Crunch, proxy: Proxy
) -> None:
    project = crunch.project("Words", "echo done > out.txt\n")
    dataset = crunch.dataset(project["slug"], "d1")
    result = crunch.run("next", "--project", "words", "--url", proxy.url, "--quiet")
    assert result.returncode == 0, result.stderr
    # Its page came first, then instead of the answers to a claim and a status the server
    # recorded: each was retried, and the keys kept the server from doing anything twice.
    assert proxy.paged == [
        "GET /api/projects/words/", "GET /api/projects/words/", "GET /api/projects/words/",
        "POST /api/projects/words/next/ (passed on)", "POST /api/statuses/batch/ (passed on)",
    ]  # fmt: skip
    assert result.stderr.count("that is not crunch's JSON") == 5
    assert Dataset.objects.get(slug=dataset["slug"]).state == "completed"
    assert Dataset.objects.get(slug=dataset["slug"]).attempts == 1
    assert statuses(dataset["slug"]) == SIX
    assert crunch.stored(dataset)["out.txt"] == "done\n"


def test_a_role_removed_mid_run_is_named(crunch: Crunch) -> None:
    project = crunch.project("Words", SLOW)
    dataset = crunch.dataset(project["slug"], "d1")
    user, crunch.token = make_user("node", role="worker", projects=[Project.objects.get()])
    client = crunch.start("run", dataset["slug"], "--heartbeat", "0.2", "--quiet")
    workflow_started(dataset["slug"])
    ProjectRole.objects.filter(user=user).delete()
    stdout, stderr = client.communicate(timeout=60)
    result = subprocess.CompletedProcess(client.args, client.returncode, stdout, stderr)
    assert result.returncode == 4, stderr
    said = "The token's role on project 'words' was removed while it held dataset 'words:d1'"
    # The status answers as for an unknown dataset: a private one is never told apart.
    assert error_line(result).startswith(f"CommandError: {said} (404 No dataset has the id or slug")
    assert error_line(result).endswith("): ask a maintainer of 'words' for the worker role again.")
    # The heartbeat says it too, once, however many beats fail.
    renewals = [line for line in stderr.splitlines() if "could not renew the lease" in line]
    assert len(renewals) == 1
    assert f"{said} (404 " in renewals[0] and " on POST claims/" in renewals[0]
    assert "check --url" not in stderr
    assert "crunch clients" not in stderr


def test_a_token_expired_mid_run_is_named(crunch: Crunch) -> None:
    project = crunch.project("Words", SLOW)
    dataset = crunch.dataset(project["slug"], "d1")
    user, crunch.token = make_user("node", role="worker", projects=[Project.objects.get()])
    client = crunch.start("run", dataset["slug"], "--heartbeat", "0.2", "--quiet")
    workflow_started(dataset["slug"])
    expired = timezone.now().replace(microsecond=0)
    AccessToken.objects.filter(user=user).update(expires=expired)
    stdout, stderr = client.communicate(timeout=60)
    result = subprocess.CompletedProcess(client.args, client.returncode, stdout, stderr)
    assert result.returncode == 4, stderr
    guidance = (
        ": ask for a new one (crunch_token on the server) and pass it with --token/CRUNCH_TOKEN."
    )
    when = expired.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert error_line(result) == f"CommandError: The token expired on {when}{guidance}"
    assert "crunch clients" not in stderr


def test_a_permission_refused_is_not_a_token_refused(crunch: Crunch) -> None:
    crunch.project("Words", "echo ok > ok.txt\n")
    dataset = crunch.dataset("words", "d1")
    result = crunch.run("add-dataset", "words", "d2")  # the client's token is a worker's
    assert result.returncode == 4
    assert error_line(result) == (
        "CommandError: The server refused POST datasets/ (403 You may not edit project "
        "'words'.): the token's role does not allow it."
    )
    assert [d.slug for d in Dataset.objects.all()] == [dataset["slug"]]
