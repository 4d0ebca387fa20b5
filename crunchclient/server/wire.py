"""The wire contract: what the server sends (a claim, a dataset, a project) as typed objects.

The field names are those of the server's serializers (``ClaimedDatasetSerializer`` in
``crunch.api.run_serializers``, ``DatasetSerializer`` and ``ProjectSerializer`` in
``crunch.api.serializers``); tests/client/test_wire.py checks them
against the serializers and parses a claim the server serialized. The client does not
import the serializers at run time: installing ``crunch`` and DRF as apps would add half
a second to every command's start. Choices come from ``crunch.choices`` (plain enums).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from crunch.choices import DatasetState, Stage, State, WorkflowKind
from crunchclient.exceptions import ServerError, UnsafePathError

__all__ = [
    "Claim", "DatasetInfo", "ProjectInfo", "ProjectStats", "Stage", "State", "StatusAnswer",
    "WorkflowKind",
]  # fmt: skip


def text(value: Any) -> str:
    return "" if value is None else str(value)


def number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def optional_number(value: Any) -> int | None:
    return None if value is None else number(value)


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"not a boolean: {value!r}")
    return value


def moment(value: Any) -> datetime.datetime | None:
    """An ISO 8601 time as DRF writes it (``Z`` for UTC), or None."""
    if value in (None, ""):
        return None
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def kind(value: Any) -> WorkflowKind | str:
    """A WorkflowKind; a kind this client does not know stays text (refused when run)."""
    name = text(value) or WorkflowKind.SCRIPT.value
    try:
        return WorkflowKind(name)
    except ValueError:
        return name


def dataset_stage(value: Any) -> Stage | None:
    return None if value is None else Stage(number(value))


def dataset_state(value: Any) -> DatasetState | str:
    try:
        return DatasetState(text(value))
    except ValueError:
        return text(value)


def parse(cls: type[Any], data: Any, what: str, parsers: Mapping[str, Callable[[Any], Any]]) -> Any:
    """An instance of the dataclass cls from the server's JSON. A field missing or of the
    wrong type is the server's error (client and server of different versions), in one line."""
    if not isinstance(data, Mapping):
        raise ServerError(f"The server sent {what} as {type(data).__name__}, not an object.")
    values: dict[str, Any] = {}
    for item in fields(cls):
        if item.name == "raw":
            continue
        if item.name not in data and item.default is not MISSING:
            continue  # added later: a server of an older version leaves it out
        if item.name not in data:
            raise ServerError(
                f"The server sent {what} without {item.name!r}: upgrade the client or the "
                "server so that both speak the same version."
            )
        parser: Callable[[Any], Any] = parsers.get(item.name, text)
        try:
            values[item.name] = parser(data[item.name])
        except (TypeError, ValueError) as exc:
            raise ServerError(
                f"The server sent {what} with {item.name} = {data[item.name]!r} ({exc})."
            ) from None
    return cls(**values, raw=dict(data))


def mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"not an object: {value!r}")
    return dict(value)


PROJECT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": number, "workflow_kind": kind, "max_attempts": number, "retry_delay": number,
    "allow_empty": flag, "is_public": flag, "paused": flag, "created": moment,
    "updated": moment, "retry_policy": mapping,
}  # fmt: skip
DATASET_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": number, "priority": number, "state": dataset_state, "stage": dataset_stage,
    "attempts": number, "lease_expires": moment, "created": moment, "updated": moment,
    "finished": moment, "needs_memory": optional_number, "needs_seconds": optional_number,
}  # fmt: skip
"""{field: its parser} where the field is not plain text."""


def dataset_prefix(raw: str, slug: str) -> str:
    """The dataset's folder in storage from its base_file_path: the one rule, refused if
    it would lead out of the storage (a leading ``/`` means the storage's root, as it
    always did)."""
    parts = raw.replace("\\", "/").split("/")
    if ".." in parts or raw[1:2] == ":" or "\x00" in raw or not raw.strip("/. "):
        raise UnsafePathError(
            f"Refusing the folder {raw!r} of dataset {slug!r}: it is not a folder inside "
            "the storage; give the dataset a relative base_file_path on the server."
        )
    return "/".join(part for part in parts if part not in ("", "."))


W = TypeVar("W", bound="WireObject")


@dataclass(frozen=True, kw_only=True)
class WireObject:
    """One object the server sends, parsed field by field with ``parsers``."""

    what: ClassVar[str]
    parsers: ClassVar[Mapping[str, Callable[[Any], Any]]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The JSON as sent (for a dataset or project: the ``.crunch/`` record the workflow reads)."""

    @classmethod
    def from_wire(cls: type[W], data: Any) -> W:
        parsed: W = parse(cls, data, cls.what, cls.parsers)
        return parsed


@dataclass(frozen=True, kw_only=True)
class NodeInfo(WireObject):
    """What projects and datasets share (the server's ``Node``)."""

    id: int
    slug: str
    name: str
    description: str
    details: str


@dataclass(frozen=True, kw_only=True)
class ProjectInfo(NodeInfo):
    """A project as ``ProjectSerializer`` sends it (with the claim, or ``GET projects/<slug>/``)."""

    what = "a project"
    parsers = PROJECT_FIELDS
    workflow: str
    workflow_kind: WorkflowKind | str
    max_attempts: int
    retry_delay: int
    allow_empty: bool
    is_public: bool
    created: datetime.datetime | None
    updated: datetime.datetime | None
    paused: bool = False  # since issue 23: a paused project hands out nothing
    container: str = ""
    """The image the workflow runs in (issue 26); "" for none, and from older servers."""
    retry_policy: dict[str, Any] = field(default_factory=dict)
    """The project's overrides of the default retry policy (issue 28); {} from older servers."""


@dataclass(frozen=True, kw_only=True)
class DatasetInfo(NodeInfo):
    """A dataset as ``DatasetSerializer`` sends it; ``project`` is the project's slug."""

    what = "a dataset"
    parsers = DATASET_FIELDS
    parent: str
    project: str
    base_file_path: str
    priority: int
    state: DatasetState | str
    stage: Stage | None
    attempts: int
    note: str
    claim_holder: str
    lease_expires: datetime.datetime | None
    created: datetime.datetime | None
    updated: datetime.datetime | None
    finished: datetime.datetime | None
    last_reason: str = ""
    """Why its last run failed (issue 28): a crunch.choices.FailReason value, "" for none."""
    last_reason_detail: str = ""
    needs_memory: int | None = None
    """Bytes a claim must announce to get it (after an out-of-memory run); None: any."""
    needs_seconds: int | None = None

    @property
    def folder(self) -> str:
        """Its folder in storage: the one rule for it (``dataset_prefix``), refused with
        UnsafePathError if it would lead out of the storage (the base_file_path is the
        server's, and so any maintainer's)."""
        return dataset_prefix(self.base_file_path, self.slug)


@dataclass(frozen=True, kw_only=True)
class Claim(WireObject):
    """What a claim answers (``ClaimedDatasetSerializer``): the claim, its dataset, its project."""

    what = "a claim"
    parsers: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "id": lambda value: uuid.UUID(str(value)), "lease_expires": moment,
        "dataset": DatasetInfo.from_wire, "project": ProjectInfo.from_wire, "started": flag,
        "attempt": number,
    }  # fmt: skip
    id: uuid.UUID
    holder: str
    lease_expires: datetime.datetime | None
    dataset: DatasetInfo
    project: ProjectInfo
    started: bool = False
    """Whether the server recorded the run's Setup Start with the claim (0.2.1 and later)."""
    attempt: int = 0
    """Which attempt of the dataset this run is, 1, 2, ... (issue 28; 0 from older servers):
    the workflow's CRUNCH_ATTEMPT."""
    last_reason: str = ""
    """Why the dataset's previous run failed ("" for none): CRUNCH_LAST_REASON."""
    last_reason_detail: str = ""

    @classmethod
    def from_wire(cls, data: Any) -> Claim:
        """Parse ``{"claim": {...}, "dataset": {...}, "project": {...}}``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("claim"), Mapping):
            raise ServerError(
                f"The server answered a claim without its 'claim' object ({str(data)[:200]!r}): "
                "upgrade the client or the server so that both speak the same version."
            )
        flat = {
            **data["claim"], "dataset": data.get("dataset"), "project": data.get("project"),
            "started": data.get("started") is True,
        }  # fmt: skip
        claim: Claim = parse(cls, flat, cls.what, cls.parsers)
        return replace(claim, raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class StatusAnswer:
    """What a status post answers that the worker reads (``StatusSerializer``): the
    dataset's state after it (``pending`` again after a Fail with attempts left), when it
    may be claimed again, and the next claim when the post asked for one."""

    dataset_state: DatasetState | str | None = None
    dataset_retry_at: str = ""
    next: Claim | None = None

    @classmethod
    def from_wire(cls, data: Any) -> StatusAnswer:
        if not isinstance(data, Mapping):
            raise ServerError(f"The server sent a status as {type(data).__name__}, not an object.")
        state = data.get("dataset_state")
        taken = data.get("next")
        return cls(
            dataset_state=None if state is None else dataset_state(state),
            dataset_retry_at=text(data.get("dataset_retry_at")),
            next=Claim.from_wire(taken) if taken else None,
        )

    @property
    def retrying(self) -> bool:
        """The dataset failed with attempts left: it is pending again."""
        return self.dataset_state == DatasetState.PENDING


@dataclass(frozen=True, kw_only=True)
class ProjectStats:
    """A project's counts (``GET projects/<slug>/stats/``), as the worker and ``crunch
    submit`` read them."""

    pending: int
    running: int
    completed: int
    failed: int
    run_seconds_p90: float | None

    @classmethod
    def from_wire(cls, data: Any) -> ProjectStats:
        if not isinstance(data, Mapping):
            raise ServerError(f"The server sent stats as {type(data).__name__}, not an object.")
        try:
            p90 = data.get("run_seconds_p90")
            return cls(
                pending=number(data["pending"]), running=number(data["running"]),
                completed=number(data["completed"]), failed=number(data["failed"]),
                run_seconds_p90=None if p90 is None else float(p90),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError(f"The server sent stats without a valid {exc}.") from None


@dataclass(frozen=True)
class SignedLink:
    """One file's signed link(s) from ``links/``: a URL for one GET or PUT, or a
    multipart upload's part URLs (``part_size`` bytes each but the last)."""

    url: str | None
    upload_id: str | None = None
    part_size: int = 0
    parts: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, item: Any) -> SignedLink:
        try:
            link = cls(
                url=item["url"], upload_id=item.get("upload_id"),
                part_size=int(item.get("part_size") or 0), parts=tuple(item.get("parts") or ()),
            )  # fmt: skip
        except (TypeError, KeyError, ValueError, AttributeError):
            link = cls(url=None)
        if (link.url is None) == (link.upload_id is None) or not all(
            isinstance(url, str) for url in (*link.parts, link.url or "")
        ):
            raise ServerError(f"The server answered a link that is not one ({str(item)[:200]!r}).")
        return link
