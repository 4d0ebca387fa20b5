"""Connection: the HTTP calls to the crunch API, nothing else.

Every call retries on connection errors, timeouts and 5xx answers with exponential
backoff and jitter for ``retry_for`` seconds, so a server restart does not lose a run.
Status posts carry a unique ``key`` so a retried post is recorded once.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

import crunch
from crunch.choices import Stage, State
from crunchclient.exceptions import (
    AuthenticationFailed,
    ClaimConflict,
    ClaimLost,
    ClientError,
    NotFound,
    ServerError,
)
from crunchclient.wire import Claim, DatasetInfo, ProjectInfo

logger = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds to wait for one answer
BACKOFF_FIRST = 0.25  # seconds before the first retry
BACKOFF_MAX = 30.0  # seconds between retries at most
START_RETRY_FOR = 30.0  # seconds to retry before the server has answered once: a wrong URL


class Connection:
    """The crunch API at ``url``, authenticated with ``token``."""

    def __init__(
        self, url: str, token: str, *, retry_for: float = 600.0, timeout: float = TIMEOUT,
        start_retry_for: float | None = START_RETRY_FOR,
    ) -> None:  # fmt: skip
        self.url = url.rstrip("/") + "/"
        self.shown = masked(self.url)  # the URL as messages show it: no password
        self.api = self.url + "api/"
        self.token = token
        self.retry_for = retry_for
        self.timeout = timeout
        self.start_retry_for = retry_for if start_retry_for is None else start_retry_for
        """How long to retry while the server has never answered: a wrong --url fails fast."""
        self.reached = False
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Token {token}",
                "Accept": "application/json",
                "User-Agent": f"crunch-client/{crunch.__version__}",
            }
        )
        # requests reads the proxy and CA-bundle variables again for every call; every call
        # goes to this one server, so they are read once (and no .netrc replaces the token).
        found = self.session.merge_environment_settings(self.api, {}, None, None, None)
        self.session.proxies.update(found["proxies"])
        self.session.verify = found["verify"]
        self.session.trust_env = False

    def clone(self) -> Connection:
        """A second connection with its own session, for another thread."""
        twin = Connection(self.url, self.token, retry_for=self.retry_for, timeout=self.timeout)
        twin.reached = self.reached
        return twin

    def close(self) -> None:
        self.session.close()

    # The calls of the API.

    def claim_next(
        self, *, holder: str, lease_seconds: int, project: str | None = None,
        start: dict[str, Any] | None = None,
    ) -> Claim | None:  # fmt: skip
        """Claim the next pending dataset (of ``project``); None when nothing is pending.

        With ``start`` (diagnostics) the server records the run's Setup Start with the claim.
        """
        path = f"projects/{quote_slug(project)}/next/" if project else "next/"
        body = next_body(holder=holder, lease_seconds=lease_seconds, start=start)
        answer = self.request(
            "POST", path, json=body, missing=f"No project has the slug {project!r}."
        )
        return None if answer is None else Claim.from_wire(answer)

    def claim_dataset(self, slug: str, *, holder: str, lease_seconds: int) -> Claim:
        # One key for every retry of this request: a lost answer does not claim twice.
        body = {"holder": holder, "lease_seconds": lease_seconds, "key": uuid.uuid4().hex}
        return Claim.from_wire(
            self.expect(
                "POST", f"datasets/{quote_slug(slug)}/claim/", json=body,
                missing=no_dataset(slug), conflict=ClaimConflict,
            )
        )  # fmt: skip

    def dataset(self, slug: str) -> DatasetInfo:
        return DatasetInfo.from_wire(
            self.expect("GET", f"datasets/{quote_slug(slug)}/", missing=no_dataset(slug))
        )

    def project(self, slug: str) -> ProjectInfo:
        return ProjectInfo.from_wire(
            self.expect(
                "GET", f"projects/{quote_slug(slug)}/",
                missing=f"No project has the slug {slug!r}.",
            )
        )  # fmt: skip

    def post_status(
        self, *, dataset: int, stage: Stage, state: State, claim: str, note: str = "",
        diagnostics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Record a status once, however often the post is retried.

        ``extra`` holds fields of one stage, e.g. the Workflow Start's ``workflow_sha256``.
        """
        return self.send_status(
            status_body(
                dataset=dataset, stage=stage, state=state, claim=claim, note=note,
                diagnostics=diagnostics, extra=extra,
            )
        )  # fmt: skip

    def send_status(
        self, body: dict[str, Any], *, next: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Post one ``status_body``; with ``next`` (a ``next_body``) also claim the next
        dataset: the answer's ``next`` is its claim, or None."""
        if next is not None:
            body = {**body, "next": next}
        return self.expect("POST", "statuses/", json=body, conflict=ClaimLost)

    def post_statuses(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record several statuses in order in one call (see ``status_body``)."""
        answer = self.request("POST", "statuses/batch/", json=bodies, conflict=ClaimLost)
        assert isinstance(answer, list), "statuses/batch/ answered without a list"
        return answer

    def renew(self, claim: str, *, lease_seconds: int) -> dict[str, Any]:
        return self.expect(
            "POST",
            f"claims/{quote_slug(claim)}/renew/",
            json={"lease_seconds": lease_seconds},
            conflict=ClaimLost,
        )

    def release(self, claim: str, *, note: str) -> dict[str, Any]:
        return self.expect(
            "POST", f"claims/{quote_slug(claim)}/release/", json={"note": note}, conflict=ClaimLost
        )

    def retry_dataset(self, slug: str) -> dict[str, Any]:
        return self.expect("POST", f"datasets/{quote_slug(slug)}/retry/", missing=no_dataset(slug))

    def running_count(self, project: str | None) -> int:
        """How many datasets (of ``project``) other clients hold now."""
        if project:
            return int(self.expect("GET", f"projects/{quote_slug(project)}/stats/")["running"])
        return int(self.expect("GET", "datasets/?state=running")["count"])

    def retry_project(self, slug: str) -> int:
        answer = self.expect(
            "POST",
            f"projects/{quote_slug(slug)}/retry/",
            missing=f"No project has the slug {slug!r}.",
        )
        return int(answer["retried"])

    # The transport.

    def expect(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call whose success always has a body."""
        answer = self.request(method, path, **kwargs)
        assert isinstance(answer, dict), f"{method} {path} answered without a body"
        return answer

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | list[Any] | None = None,
        missing: str | None = None,
        conflict: type[ServerError] = ServerError,
    ) -> Any:
        """Send one call, retrying transient failures; map refusals to our errors.

        Returns the answer's JSON (an object, or a list for a batch); None for a 204.
        """
        url = self.api + path
        retry_for = self.retry_for if self.reached else min(self.retry_for, self.start_retry_for)
        deadline = time.monotonic() + retry_for
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, json=json, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = type(exc).__name__
                error: Exception = exc
            else:
                self.reached = True
                if response.status_code < 500:
                    return self.answer(response, missing=missing, conflict=conflict)
                problem = f"HTTP {response.status_code}"
                error = ServerError(problem)
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(
                    f"Cannot reach the crunch server at {self.shown!r} ({problem} on {method} "
                    f"{path}) after retrying for {retry_for:g}s: check --url/CRUNCH_URL "
                    "and that the server is running."
                ) from error
            pause = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1), left)
            pause *= random.uniform(0.5, 1.0)
            logger.warning(
                "Server unreachable (%s on %s %s); retrying in %.1fs", problem, method, path, pause
            )
            time.sleep(pause)

    def answer(
        self, response: requests.Response, *, missing: str | None, conflict: type[ServerError]
    ) -> Any:
        code = response.status_code
        if code == 204:
            return None
        if code < 400:
            try:
                data = response.json()
                return data if isinstance(data, list) else dict(data)
            except ValueError as exc:
                raise ServerError(
                    f"The server at {self.shown!r} answered {response.request.method} "
                    f"{masked(response.url)!r} with something that is not JSON: "
                    "check --url/CRUNCH_URL."
                ) from exc
        detail = detail_of(response)
        if code in (401, 403):
            raise AuthenticationFailed(
                f"The server at {self.shown!r} refused the token ({code} {detail}): "
                "check --token/CRUNCH_TOKEN and that its user is in the 'crunch clients' group."
            )
        if code == 404:
            raise NotFound(
                missing
                or f"Not found: {masked(response.url)!r} ({detail}); check --url/CRUNCH_URL."
            )
        if code == 409:
            raise conflict(detail)
        raise ClientError(
            f"The server rejected {response.request.method} {masked(response.url)!r}: {detail}"
        )


def status_body(
    *, dataset: int, stage: Stage, state: State, claim: str, note: str = "",
    diagnostics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A status with its own key: recorded once, however often its post is retried."""
    return {
        "dataset": dataset, "stage": int(stage), "state": int(state), "note": note,
        "claim": claim, "key": uuid.uuid4().hex, **(diagnostics or {}), **(extra or {}),
    }  # fmt: skip


def next_body(*, holder: str, lease_seconds: int, start: dict[str, Any] | None) -> dict[str, Any]:
    """A claim request. One key for every retry of it: a lost answer does not claim twice."""
    body: dict[str, Any] = {"holder": holder, "lease_seconds": lease_seconds}
    body["key"] = uuid.uuid4().hex
    if start is not None:
        body["start"] = start
    return body


def detail_of(response: requests.Response) -> str:
    """The server's one-line ``detail``, or the start of whatever it sent."""
    try:
        data = response.json()
    except ValueError:
        return response.reason or response.text[:200].replace("\n", " ")
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"]).replace("\n", " ")
    return str(data)[:200]


def no_dataset(slug: str) -> str:
    return f"No dataset has the slug {slug!r}: dataset slugs look like 'project:dataset'."


def quote_slug(slug: str) -> str:
    """A slug as one segment of a URL path: ``/``, ``?``, ``#`` and the dot segments escaped."""
    quoted = quote(slug, safe=":")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def masked(url: str) -> str:
    """The URL with the password of its user info replaced by ``***``, to print it."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def password_of(url: str) -> str | None:
    """The password in the URL's user info, if any: a secret to keep from the workflow."""
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None
