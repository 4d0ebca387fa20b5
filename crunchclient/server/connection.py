"""Connection: the crunch API, one typed method per endpoint, nothing else.

The transport (retries, errors, URL helpers) is ``crunchclient.server.http``. Claims and
status posts carry a unique ``key`` so a retried post is recorded once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from crunchclient.exceptions import ClaimConflict, ClaimLost, ConfigurationError, ResultsRefused
from crunchclient.server.batches import BatchAnswer, Renewal, claims_of
from crunchclient.server.bodies import Diagnostics, NextRequest, StatusReport
from crunchclient.server.http import Transport, quote_slug
from crunchclient.server.results import ResultStream, params_of
from crunchclient.server.wire import Claim, DatasetInfo, ProjectInfo, ProjectStats, StatusAnswer


class Connection(Transport):
    """The crunch API at ``url``, authenticated with ``token``."""

    batches = False
    """Whether the server takes statuses and a claim in one call (``post_batch``), as its
    answer to a counted claim says; an older server answers one claim, not a list."""

    def clone(self) -> Connection:
        """A second connection with its own session, for another thread."""
        twin = Connection(self.url, self.token, retry_for=self.retry_for, timeout=self.timeout)
        twin.reached = self.reached
        twin.batches = self.batches
        twin.held = self.held  # shared: the heartbeat renews the claims this one takes
        return twin

    # The calls of the API.

    def claim_next(
        self, *, holder: str, lease_seconds: int, project: str | None = None,
        start: Diagnostics | None = None, memory: int | None = None, seconds: int | None = None,
    ) -> Claim | None:  # fmt: skip
        """Claim the next pending dataset (of ``project``); None when nothing is pending.

        With ``start`` (diagnostics) the server records the run's Setup Start with the claim.
        ``memory`` (bytes) and ``seconds``: what this client gives one dataset; the server
        hands out only datasets that need no more.
        """
        path = f"projects/{quote_slug(project)}/next/" if project else "next/"
        body = NextRequest(
            holder=holder, lease_seconds=lease_seconds, start=start, memory=memory,
            seconds=seconds, count=1,
        ).to_wire()  # fmt: skip
        answer = self.request(
            "POST", path, json=body, missing=no_project(project or ""),
            project=project,
        )  # fmt: skip
        claims, counted = claims_of(answer)
        self.batches = self.batches or counted
        return self.hold(claims[0]) if claims else None

    def claim_dataset(self, slug: str, *, holder: str, lease_seconds: int) -> Claim:
        body = NextRequest(holder=holder, lease_seconds=lease_seconds).to_wire()
        return self.hold(
            Claim.from_wire(
                self.expect(
                    "POST", f"datasets/{quote_slug(slug)}/claim/", json=body,
                    missing=no_dataset(slug), conflict=ClaimConflict,
                )
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
                missing=no_project(slug), project=slug,
            )
        )  # fmt: skip

    def send_status(self, report: StatusReport, *, next: NextRequest | None = None) -> StatusAnswer:
        """Post one status; with ``next`` also claim the next dataset (the answer's
        ``next``, held like any claim)."""
        answer = StatusAnswer.from_wire(
            self.expect(
                "POST", "statuses/", json=report.to_wire(next=next), conflict=ClaimLost,
                claim=report.claim, refused=refusal_of([report]),
            )
        )  # fmt: skip
        if answer.next is not None:
            self.hold(answer.next)
        return answer

    def post_statuses(self, reports: list[StatusReport]) -> list[StatusAnswer]:
        """Record several statuses in order in one call."""
        claim = next((report.claim for report in reports if report.claim), None)
        answer = self.request(
            "POST", "statuses/batch/", json=[report.to_wire() for report in reports],
            conflict=ClaimLost, claim=claim, refused=refusal_of(reports),
        )  # fmt: skip
        assert isinstance(answer, list), "statuses/batch/ answered without a list"
        return [StatusAnswer.from_wire(item) for item in answer]

    # The batched calls of a loop with slots.

    def claim_many(self, request: NextRequest) -> tuple[list[Claim], bool]:
        """Claim up to ``request.count`` datasets (of ``request.project``) in one call, each
        with its own claim and lease; and whether the server took the count (an older one
        claims one at most)."""
        project = request.project
        path = f"projects/{quote_slug(project)}/next/" if project else "next/"
        answer = self.request(
            "POST", path, json=replace(request, project=None).to_wire(),
            missing=no_project(project or ""), project=project,
        )  # fmt: skip
        claims, counted = claims_of(answer)
        return [self.hold(claim) for claim in claims], counted

    def post_batch(self, reports: list[StatusReport], *, next: NextRequest | None) -> BatchAnswer:
        """Record the statuses of several datasets in order, each refused on its own (a lost
        claim refuses its dataset's, not the others'); with ``next`` also claim."""
        body: dict[str, Any] = {"statuses": [report.to_wire() for report in reports]}
        if next is not None:
            body["next"] = next.to_wire()
        answer = BatchAnswer.from_wire(
            self.expect("POST", "statuses/batch/", json=body), len(reports)
        )
        for claim in answer.claims:
            self.hold(claim)
        return answer

    def renew_many(
        self, claims: list[str], *, lease_seconds: int, client: dict[str, Any]
    ) -> Renewal:
        """Renew every claim in one call; those no longer ours come back as ``lost``."""
        body = {"claims": claims, "lease_seconds": lease_seconds, "client": client}
        return Renewal.from_wire(self.expect("POST", "claims/renew/", json=body))

    def renew(self, claim: str, *, lease_seconds: int) -> None:
        self.expect(
            "POST", f"claims/{quote_slug(claim)}/renew/", json={"lease_seconds": lease_seconds},
            conflict=ClaimLost, claim=claim,
        )  # fmt: skip

    def release(self, claim: str, *, note: str, reason: str = "", detail: str = "") -> None:
        """Give a claim back without spending an attempt; ``reason`` (cancelled when not
        given, or time-limit with ``detail`` wall-time) is recorded with the note."""
        body = {"note": note}
        if reason:
            body |= {"reason": reason, "reason_detail": detail}
        self.expect(
            "POST", f"claims/{quote_slug(claim)}/release/", json=body,
            conflict=ClaimLost, claim=claim,
        )  # fmt: skip

    def retry_dataset(self, slug: str) -> dict[str, Any]:
        return self.expect("POST", f"datasets/{quote_slug(slug)}/retry/", missing=no_dataset(slug))

    def project_stats(self, slug: str) -> ProjectStats:
        """The project's counts by state (``ProjectStatsView``): the deadline's and submit's
        measure of what is left."""
        return ProjectStats.from_wire(self.expect("GET", f"projects/{quote_slug(slug)}/stats/"))

    def running_count(self, project: str | None) -> int:
        """How many datasets (of ``project``) other clients hold now."""
        if project:
            return self.project_stats(project).running
        return int(self.expect("GET", "datasets/?state=running")["count"])

    def retry_project(self, slug: str) -> int:
        answer = self.expect(
            "POST",
            f"projects/{quote_slug(slug)}/retry/",
            missing=no_project(slug),
        )
        return int(answer["retried"])

    # The terminal's calls: listings and details as the server shows them to a person.

    def listing(self, path: str, **params: str | list[str] | None) -> Iterator[dict[str, Any]]:
        """Every row of a paginated listing, page after page (DRF's ``next`` links).

        A list is a repeated parameter (``where``); a 400 is a bad option, in the server's
        words (a filter on a result the project does not have).
        """
        given = {key: value for key, value in params.items() if value}
        page = 1
        while True:
            query = urlencode({**given, "page": page}, doseq=True)
            answer = self.expect("GET", f"{path}?{query}", refused=ConfigurationError)
            yield from answer.get("results", [])
            if not answer.get("next"):
                return
            page += 1

    def projects(self) -> Iterator[dict[str, Any]]:
        return self.listing("projects/")

    def datasets(self, **filters: str | list[str] | None) -> Iterator[dict[str, Any]]:
        """The datasets the token may see, filtered by ``project``, ``state``, ``search``,
        and by results: ``where`` (a list), ``sort``, ``columns`` (with ``project``)."""
        return self.listing("datasets/", **filters)

    def results(
        self, project: str, *, format: str = "jsonl", where: Sequence[str] = (),
        columns: str | Sequence[str] | None = None, sort: str | None = None,
    ) -> ResultStream:  # fmt: skip
        """The project's results table, streamed as CSV or JSON Lines (unread)."""
        query = params_of(format=format, where=where, columns=columns, sort=sort)
        response = self.request(
            "GET", f"projects/{quote_slug(project)}/results/?{urlencode(query, doseq=True)}",
            missing=no_project(project), refused=ConfigurationError, stream=True,
        )  # fmt: skip
        return ResultStream(response=response, format=format)

    def statuses(self, dataset: str) -> Iterator[dict[str, Any]]:
        """A dataset's statuses, oldest first."""
        return self.listing("statuses/", dataset=dataset)

    def project_detail(self, slug: str) -> dict[str, Any]:
        return self.expect("GET", f"projects/{quote_slug(slug)}/", missing=no_project(slug))

    def change_project(self, slug: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH the project's fields in ``changes``; the project as it is after."""
        return self.expect(
            "PATCH", f"projects/{quote_slug(slug)}/", json=changes, missing=no_project(slug)
        )

    def overview(self, slug: str, *, missing: str | None = None) -> dict[str, Any]:
        """The project's counts and failures (``ProjectOverviewView``)."""
        return self.expect("GET", f"projects/{quote_slug(slug)}/overview/", missing=missing)

    def why(self, slug: str, *, missing: str | None = None) -> dict[str, Any]:
        """Why the dataset is where it is (``DatasetWhyView``)."""
        return self.expect("GET", f"datasets/{quote_slug(slug)}/why/", missing=missing)

    def release_dataset(self, slug: str) -> None:
        """Return a running dataset to pending (a maintainer's release, not a claim's)."""
        self.expect("POST", f"datasets/{quote_slug(slug)}/release/", missing=no_dataset(slug))

    def register(self, project: str, entries: list[Any], *, missing: str) -> dict[str, Any]:
        """Register many datasets at once: the answer's ``created`` and ``existing``."""
        path = f"projects/{quote_slug(project)}/datasets/"
        return self.expect("POST", path, json=entries, missing=missing)

    def create_project(self, fields: dict[str, Any]) -> str:
        """Create a project; its slug."""
        return str(self.expect("POST", "projects/", json=fields)["slug"])

    def create_dataset(self, fields: dict[str, Any]) -> str:
        """Create a dataset (``parent``: its project's slug); its slug."""
        return str(self.expect("POST", "datasets/", json=fields)["slug"])

    def create_item(self, fields: dict[str, Any]) -> str:
        """Create an item under a dataset or item (``parent``); its slug."""
        return str(self.expect("POST", "items/", json=fields)["slug"])

    def add_attribute(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Add a typed attribute (``kind`` as the API names it: int, lat-long...)."""
        return self.expect("POST", f"attributes/{quote_slug(kind)}/", json=fields)


def refusal_of(reports: Sequence[StatusReport]) -> type[ResultsRefused] | None:
    """What a 400 on ``reports`` means: their results refused, when one carries results (the
    rest of a status is the client's own making)."""
    return ResultsRefused if any(report.results is not None for report in reports) else None


def no_project(slug: str) -> str:
    return f"No project has the slug {slug!r}."


def no_dataset(slug: str) -> str:
    return f"No dataset has the slug {slug!r}: dataset slugs look like 'project:dataset'."
