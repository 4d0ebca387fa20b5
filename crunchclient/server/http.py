"""The transport under ``Connection``: one HTTP call, retried, its refusals mapped to our
errors; and the URL helpers (quoted slugs, masked passwords).

Every call retries on connection errors, timeouts, 5xx answers and 2xx answers that are
not JSON (a proxy's page) with exponential backoff and jitter for ``retry_for`` seconds,
so a server restart does not lose a run.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

import crunch
from crunchclient.exceptions import (
    AccessRemoved,
    AuthenticationFailed,
    ClientError,
    ConfigurationError,
    NotAllowed,
    NotFound,
    ProjectPaused,
    ServerError,
)
from crunchclient.server import hints
from crunchclient.server.replies import (
    decoded,
    detail_of,
    permanent_cause,
    retry_after,
    token_refused,
)
from crunchclient.server.wire import Claim

logger = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds to wait for one answer
BACKOFF_FIRST = 0.25  # seconds before the first retry
BACKOFF_MAX = 30.0  # seconds between retries at most
START_RETRY_FOR = 30.0  # seconds to retry before the server has answered once: a wrong URL
HELD = 16  # claims remembered (a client holds two at most: the current one and the next)


class Transport:
    """HTTP calls to the crunch API at ``url``, authenticated with ``token``."""

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
        self.held: dict[str, tuple[str, str]] = {}
        """{claim id: (project slug, dataset slug)} of the claims taken lately: a 404 or 403
        on one of them, or on their project, means the token's role was removed."""
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

    def close(self) -> None:
        self.session.close()

    # The claims held, to say what a refusal means.

    def hold(self, claim: Claim) -> Claim:
        """Remember ``claim``'s project and dataset (see ``held``); return it."""
        self.remember(str(claim.id), claim.project.slug, claim.dataset.slug)
        return claim

    def remember(self, claim: str, project: str, dataset: str) -> None:
        self.held[claim] = (project, dataset)
        while len(self.held) > HELD:
            self.held.pop(next(iter(self.held)), None)

    def removed(self, *, claim: str | None, project: str | None) -> tuple[str, str] | None:
        """(project, dataset) when ``claim``, or ``project``, is one we held a claim on."""
        if claim and (found := self.held.get(claim)):
            return found
        if project:
            datasets = [dataset for slug, dataset in list(self.held.values()) if slug == project]
            return (project, datasets[-1]) if datasets else None
        return None

    # The transport.

    def expect(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call whose success always has a body."""
        answer = self.request(method, path, **kwargs)
        assert isinstance(answer, dict), f"{method} {path} answered without a body"
        return answer

    def request(  # noqa: PLR0913 (keyword-only: what one call may need)
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | list[Any] | None = None,
        missing: str | None = None,
        conflict: type[ServerError] = ServerError,
        claim: str | None = None,
        project: str | None = None,
        headers: dict[str, str] | None = None,
        refused: type[ClientError] | None = None,
        stream: bool = False,
    ) -> Any:
        """Send one call, retrying transient failures; map refusals to our errors.

        ``claim`` or ``project`` name what the call is about: a 404 or 403 on a claim or
        project we held means the token's role was removed. ``refused``, when given, is the
        error a 400 raises with the server's own words (a filter it refuses is a bad
        option). Returns the answer's JSON (an object, or a list for a batch); None for a
        204; with ``stream``, a success's unread ``requests.Response`` (whatever its type).
        """
        url = self.api + path
        retry_for = self.retry_for if self.reached else min(self.retry_for, self.start_retry_for)
        deadline = time.monotonic() + retry_for
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, url, json=json, headers=headers, timeout=self.timeout, stream=stream
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not self.reached and (cause := permanent_cause(exc, self.shown)):
                    raise ConfigurationError(cause) from None
                problem = type(exc).__name__
                error: Exception = exc
            else:
                code = response.status_code
                if stream and 200 <= code < 300:
                    self.reached = True
                    return response
                data = decoded(response)
                if code >= 500:
                    self.reached = True  # the server (or its proxy) is there: a restart
                    problem = f"HTTP {code}"
                    error = ServerError(problem)
                elif code == 429:
                    # Too many failed logins from this address (another node's bad token):
                    # wait as the server asks, then go on; our own token is not at fault.
                    problem = f"HTTP 429 {detail_of(response, data)}"
                    error = ServerError(problem)
                    wait = retry_after(response)
                    if deadline - time.monotonic() > wait:
                        logger.warning("%s; waiting %gs as the server asks", problem, wait)
                        time.sleep(wait)
                        continue
                elif code < 300 and code != 204 and not isinstance(data, (dict, list)):
                    # A proxy's page instead of ours: the call may not have reached us.
                    kind = response.headers.get("Content-Type", "no type").split(";")[0]
                    problem = f"HTTP {code} {kind} that is not crunch's JSON"
                    error = ServerError(problem)
                else:
                    self.reached = True
                    return self.answer(
                        response, data, method=method, path=path, missing=missing,
                        conflict=conflict, claim=claim, project=project, refused=refused,
                    )  # fmt: skip
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(
                    f"Cannot reach the crunch server at {self.shown!r} ({problem} on {method} "
                    f"{path}) after retrying for {retry_for:g}s: check --url/CRUNCH_URL "
                    "and that the server is running."
                ) from error
            # Jitter first, then the time left: a pause cut to what is left sleeps all of it,
            # so the last tries never come in a burst of ever shorter pauses.
            pause = backoff(attempt)
            pause = min(pause, left)
            logger.warning(
                "Server unreachable (%s on %s %s); retrying in %.1fs", problem, method, path, pause
            )
            time.sleep(pause)

    def peek(self, path: str) -> Any:
        """GET ``path`` once, for a hint after a 404: its JSON, None when that fails too."""
        try:
            response = self.session.get(self.api + path, timeout=self.timeout)
        except requests.RequestException:
            return None
        return decoded(response) if response.status_code < 400 else None

    def answer(  # noqa: PLR0913 (keyword-only: request's)
        self, response: requests.Response, data: Any, *, method: str, path: str,
        missing: str | None, conflict: type[ServerError], claim: str | None, project: str | None,
        refused: type[ClientError] | None = None,
    ) -> Any:  # fmt: skip
        """The JSON of a success; our error for a refusal (4xx)."""
        code = response.status_code
        if code == 204:
            return None
        if code < 400:
            return data
        detail = detail_of(response, data)
        if code == 401:
            raise AuthenticationFailed(token_refused(self.shown, detail))
        if code in (403, 404) and (held := self.removed(claim=claim, project=project)):
            project, dataset = held
            raise AccessRemoved(
                f"The token's role on project {project!r} was removed while it held dataset "
                f"{dataset!r} ({code} {detail} on {method} {path}): ask a maintainer of "
                f"{project!r} for the worker role again."
            )
        if code == 403:
            raise NotAllowed(
                f"The server refused {method} {path} ({code} {detail}): the token's role "
                "does not allow it."
            )
        if code == 404:
            if wrong_url := hints.api_missing(self.url, self.peek):
                raise NotFound(wrong_url)
            if missing:
                raise NotFound(missing + hints.suggestion(path, self.peek))
            raise NotFound(
                f"Not found: {masked(response.url)!r} ({detail}); check --url/CRUNCH_URL."
            )
        if code == 400 and refused is not None:
            raise refused(detail)
        if code == 409:
            paused = isinstance(data, dict) and data.get("code") == "project_paused"
            raise (ProjectPaused if paused else conflict)(detail)
        raise ServerError(f"The server rejected {method} {masked(response.url)!r}: {detail}")


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): doubling, capped, jittered."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)) * random.uniform(0.5, 1))


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
