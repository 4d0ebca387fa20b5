"""Who gets which HTTP status from every endpoint, page and file URL: the one table.

``tests/server/test_permissions.py`` runs every cell against a live server with fresh
data, and ``scripts/permissions_doc.py`` writes it to ``docs/permissions.md``; a test
fails when that file is out of date.

Each row names a request; ``public`` and ``private`` give the status code for each role
in ``ROLES`` order, on a public project and on a private one. Paths and bodies name the
cell's data in braces (see ``PLACEHOLDERS``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("anonymous", "no role", "viewer", "worker", "other worker", "maintainer", "staff")
ROLE_HELP = {
    "anonymous": "no token, no session",
    "no role": "signed in, no role on any project",
    "viewer": "viewer of the project",
    "worker": "worker of the project",
    "other worker": "worker of another (private) project only",
    "maintainer": "maintainer of the project (not site-wide: may not create projects)",
    "staff": "`is_staff` with Django's view permissions on projects and datasets, no role",
}
VISIBILITIES = ("public", "private")

PLACEHOLDERS = {
    "project": "the project's slug",
    "project_id": "the project's id",
    "dataset": "a pending dataset of the project, holding the file `result.txt` and the "
    "result `score` 0.9 (the other project's dataset too)",
    "dataset_id": "that dataset's id",
    "item": "an item of that dataset",
    "attribute": "a text attribute of that dataset",
    "status": "a status of that project",
    "failed": "a failed dataset of the project",
    "mine": "a running dataset whose claim the role's user holds (granted before the role changed)",
    "my_claim": "that claim's id",
    "theirs": "a running dataset whose claim another worker of the project holds",
    "their_claim": "that claim's id",
    "public": "`true` on the public project's column, `false` on the private one's",
    "lapsed": "a running dataset whose claim the role's user held, its lease expired an hour ago",
    "lapsed_claim": "that claim's id",
    "upload_id": "(S3) a multipart upload of `big.bin` in `{mine}`, its one part sent",
    "etag": "that part's ETag",
    "notification": "a webhook notification of the project",
}


@dataclass(frozen=True)
class Raw:
    """A request body sent as bytes (a file, a tar stream) rather than JSON."""

    content_type: str
    data: bytes
    shown: str
    """What docs/permissions.md shows for it."""


def tar_of(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


FILE = Raw("application/octet-stream", b"written\n", "(6 bytes)")
TAR = Raw("application/x-tar", tar_of({"bundled.txt": b"bundled\n"}), "(a tar of `bundled.txt`)")


@dataclass(frozen=True)
class Row:
    """One request and the status code each role gets for it."""

    name: str
    method: str
    path: str
    public: str
    private: str
    body: Any = None
    session: bool = False
    """Pages and the admin: signed in with a session cookie rather than a token."""
    lists: bool = False
    """A list: where it answers 200 to a role that may view the project, it names it."""
    headers: Mapping[str, str] = field(default_factory=dict)
    storage: str = "local"
    """"s3" runs the row on an S3 storage (moto's server), which signs links."""
    stores: tuple[str, str] | None = None
    """(dataset, path) the request writes: there after a 2xx answer, absent after any other."""
    xfail: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """Cells whose code is known wrong, (role, visibility) to the reason."""

    def __post_init__(self) -> None:
        for visibility in VISIBILITIES:
            codes = getattr(self, visibility).split()
            if len(codes) != len(ROLES) or not all(code.isdigit() for code in codes):
                raise ValueError(f"Row {self.name!r}: give {len(ROLES)} codes for {visibility}.")

    def expected(self, role: str, visibility: str) -> int:
        return int(getattr(self, visibility).split()[ROLES.index(role)])


def read(ok: int = 200) -> dict[str, str]:
    """Whoever may view: everyone on a public project; roles and staff on a private one."""
    return {
        "public": f"{ok} {ok} {ok} {ok} {ok} {ok} {ok}",
        "private": f"404 404 {ok} {ok} 404 {ok} {ok}",
    }


def everyone(code: int) -> dict[str, str]:
    codes = " ".join([str(code)] * len(ROLES))
    return {"public": codes, "private": codes}


def edit(ok: int) -> dict[str, str]:
    """Maintainers only; 404 to whoever may not see the project, 401 to anonymous writes."""
    return {"public": f"401 403 403 403 403 {ok} 403", "private": f"401 404 403 403 404 {ok} 403"}


def process(ok: int) -> dict[str, str]:
    """Workers and maintainers; otherwise as ``edit``."""
    return {
        "public": f"401 403 403 {ok} 403 {ok} 403",
        "private": f"401 404 403 {ok} 404 {ok} 403",
    }


def signed_in(code: int) -> dict[str, str]:
    """401 to anonymous writes; ``code`` to every signed-in user."""
    codes = f"401 {' '.join([str(code)] * (len(ROLES) - 1))}"
    return {"public": codes, "private": codes}


def read_post(ok: int) -> dict[str, str]:
    """A read sent as POST (a body of names): as ``read``, anonymous readers included."""
    return read(ok)


def claimed(ok: int) -> dict[str, str]:
    """Writes through the server: the process role and the claim; 403 to those who may
    only see the dataset, 404 to those who may not see it, 401 without a token."""
    return {
        "public": f"401 403 403 {ok} 403 {ok} 403",
        "private": f"401 404 403 {ok} 404 {ok} 403",
    }


MY_CLAIM = {"X-Crunch-Claim": "{my_claim}"}
LAPSED_CLAIM = {"X-Crunch-Claim": "{lapsed_claim}"}
THEIR_CLAIM = {"X-Crunch-Claim": "{their_claim}"}
ONE_WRITE = [{"path": "new.txt", "size": 5}]


STAFF_ONLY = {"public": "302 302 302 302 302 302 200", "private": "302 302 302 302 302 302 200"}
"""The admin: non-staff are sent to its login page."""

START = {"stage": 1, "state": 1}
UPLOAD_SUCCESS = {"stage": 3, "state": 2}

ROWS: tuple[Row, ...] = (
    # Projects
    Row("list projects", "GET", "/api/projects/", **everyone(200), lists=True),
    Row("project detail", "GET", "/api/projects/{project}/", **read()),
    Row("create project", "POST", "/api/projects/", **signed_in(403),
        body={"name": "Created", "is_public": "{public}"}),
    Row("update project", "PATCH", "/api/projects/{project}/", **edit(200),
        body={"description": "changed"}),
    Row("pause project", "PATCH", "/api/projects/{project}/", **edit(200),
        body={"paused": True}),
    Row("change a project's retry policy", "PATCH", "/api/projects/{project}/", **edit(200),
        body={"retry_policy": {"out-of-memory": {"retry": True, "delay": 600}}}),
    Row("delete project", "DELETE", "/api/projects/{project}/", **edit(204)),
    Row("project stats", "GET", "/api/projects/{project}/stats/", **read()),
    Row("retry a project's failed datasets", "POST", "/api/projects/{project}/retry/",
        **edit(200)),
    Row("project overview", "GET", "/api/projects/{project}/overview/", **read()),
    Row("register datasets", "POST", "/api/projects/{project}/datasets/", **edit(200),
        body=[{"name": "registered"}]),
    Row("claim next of a project", "POST", "/api/projects/{project}/next/", **process(200)),
    Row("claim several of a project", "POST", "/api/projects/{project}/next/", **process(200),
        body={"count": 2}),
    Row("claim next announcing memory and time", "POST", "/api/projects/{project}/next/",
        **process(200), body={"memory": 8 * 2**30, "seconds": 3600}),
    Row("peek next of a project", "GET", "/api/projects/{project}/next/", **read()),
    # A project's notifications: maintainers only, reads included (a webhook's URL)
    Row("list notifications", "GET", "/api/projects/{project}/notifications/", **edit(200)),
    Row("create notification", "POST", "/api/projects/{project}/notifications/", **edit(201),
        body={"kind": "webhook", "url": "https://hooks.example.org/new"}),
    Row("notification detail", "GET", "/api/projects/{project}/notifications/{notification}/",
        **edit(200)),
    Row("update notification", "PATCH",
        "/api/projects/{project}/notifications/{notification}/", **edit(200),
        body={"events": ["failed"]}),
    Row("delete notification", "DELETE",
        "/api/projects/{project}/notifications/{notification}/", **edit(204)),
    # Datasets
    Row("list datasets", "GET", "/api/datasets/?project={project}", **everyone(200), lists=True),
    Row("list datasets by failure reason", "GET",
        "/api/datasets/?project={project}&reason=out-of-memory", **everyone(200)),
    Row("dataset detail", "GET", "/api/datasets/{dataset}/", **read()),
    Row("create dataset", "POST", "/api/datasets/", **edit(201),
        body={"name": "created", "parent": "{project}"}),
    Row("update dataset", "PATCH", "/api/datasets/{dataset}/", **edit(200),
        body={"priority": 3}),
    Row("delete dataset", "DELETE", "/api/datasets/{dataset}/", **edit(204)),
    Row("claim a dataset", "POST", "/api/datasets/{dataset}/claim/", **process(200)),
    Row("claim a dataset another holds", "POST", "/api/datasets/{theirs}/claim/",
        **process(409)),
    Row("why a dataset is where it is", "GET", "/api/datasets/{dataset}/why/", **read()),
    Row("list datasets filtered and sorted by results", "GET",
        "/api/datasets/?project={project}&where=score>0.5&sort=-score&columns=score",
        **read(), lists=True),
    Row("list datasets filtered by an unknown result", "GET",
        "/api/datasets/?project={project}&where=nope>1", **read(400)),
    # Results
    Row("project results (CSV)", "GET", "/api/projects/{project}/results/", **read()),
    Row("project results filtered (JSON Lines)", "GET",
        "/api/projects/{project}/results/?format=jsonl&where=score>0.5&sort=-score", **read()),
    Row("project results filtered by an unknown result", "GET",
        "/api/projects/{project}/results/?where=nope>1", **read(400)),
    Row("retry a failed dataset", "POST", "/api/datasets/{failed}/retry/", **edit(200)),
    Row("release a running dataset", "POST", "/api/datasets/{theirs}/release/", **edit(200)),
    Row("release a dataset that is not running", "POST", "/api/datasets/{dataset}/release/",
        **edit(409)),
    # Items
    Row("list items", "GET", "/api/items/", **everyone(200), lists=True),
    Row("item detail", "GET", "/api/items/{item}/", **read()),
    Row("create item", "POST", "/api/items/", **edit(201),
        body={"name": "created", "parent": "{dataset}"}),
    Row("update item", "PATCH", "/api/items/{item}/", **edit(200),
        body={"description": "changed"}),
    Row("delete item", "DELETE", "/api/items/{item}/", **edit(204)),
    # Attributes: listed and created by type; there is no detail, update or delete.
    Row("list attributes", "GET", "/api/attributes/", **everyone(200), lists=True),
    Row("list attributes of a type", "GET", "/api/attributes/char/", **everyone(200),
        lists=True),
    Row("create attribute", "POST", "/api/attributes/char/", **edit(201),
        body={"item": "{dataset}", "key": "size", "value": "large"}),
    Row("attribute detail (no such URL)", "GET", "/api/attributes/{attribute}/",
        **everyone(404)),
    Row("update attribute (no such URL)", "PATCH", "/api/attributes/{attribute}/",
        **everyone(404), body={"value": "small"}),
    Row("delete attribute (no such URL)", "DELETE", "/api/attributes/{attribute}/",
        **everyone(404)),
    # Statuses: appended, never changed
    Row("list statuses", "GET", "/api/statuses/", **everyone(200), lists=True),
    Row("status detail", "GET", "/api/statuses/{status}/", **read()),
    Row("post status on own claim", "POST", "/api/statuses/", **process(201),
        body={"dataset": "{mine}", **START, "claim": "{my_claim}"}),
    Row("post statuses in a batch on own claim", "POST", "/api/statuses/batch/",
        **process(201), body=[{"dataset": "{mine}", **START, "claim": "{my_claim}"}]),
    Row("post statuses of several datasets (each answered in the body)", "POST",
        "/api/statuses/batch/", **signed_in(200), body={"statuses": [
            {"dataset": "{mine}", **START, "claim": "{my_claim}"},
            {"dataset": "{theirs}", **START, "claim": "{their_claim}"}]}),
    Row("post status on another's claim", "POST", "/api/statuses/", **process(409),
        body={"dataset": "{theirs}", **START, "claim": "{their_claim}"}),
    Row("post Setup Start without claim (0.1 client)", "POST", "/api/statuses/",
        **process(201), body={"dataset": "{dataset}", **START}),
    Row("post Upload Success without claim", "POST", "/api/statuses/", **process(409),
        body={"dataset": "{dataset}", **UPLOAD_SUCCESS}),
    Row("update status", "PATCH", "/api/statuses/{status}/", **signed_in(405),
        body={"note": "changed"}),
    Row("delete status", "DELETE", "/api/statuses/{status}/", **signed_in(405)),
    # Queue and claims
    Row("claim next of any project", "POST", "/api/next/",
        public="401 204 204 200 204 200 204", private="401 204 204 200 204 200 204"),
    Row("claim several of any project", "POST", "/api/next/", **signed_in(200),
        body={"count": 2}),
    Row("peek next of any project", "GET", "/api/next/", **everyone(200)),
    Row("renew own claim", "POST", "/api/claims/{my_claim}/renew/", **process(200)),
    Row("renew another's claim", "POST", "/api/claims/{their_claim}/renew/", **signed_in(409)),
    Row("renew claims in one call (another's answered lost)", "POST", "/api/claims/renew/",
        **signed_in(200), body={"claims": ["{my_claim}", "{their_claim}"]}),
    Row("release own claim", "POST", "/api/claims/{my_claim}/release/", **process(200)),
    Row("release own claim with a reason", "POST", "/api/claims/{my_claim}/release/",
        **process(200), body={"reason": "time-limit", "reason_detail": "wall-time"}),
    Row("release another's claim", "POST", "/api/claims/{their_claim}/release/",
        **signed_in(409)),
    Row("API schema", "GET", "/api/schema/", **everyone(200)),
    # A dataset's files through the server
    Row("manifest", "GET", "/api/datasets/{dataset}/manifest/", **read()),
    Row("read a file", "GET", "/api/datasets/{dataset}/files/result.txt", **read()),
    Row("read a bundle", "POST", "/api/datasets/{dataset}/bundle/", **read_post(200),
        body={"paths": ["result.txt"]}),
    Row("write a file on own claim", "PUT", "/api/datasets/{mine}/files/out/new.txt",
        **claimed(200), body=FILE, headers=MY_CLAIM, stores=("mine", "out/new.txt")),
    Row("write a file without a claim", "PUT", "/api/datasets/{mine}/files/new.txt",
        **claimed(409), body=FILE, stores=("mine", "new.txt")),
    Row("write a file on a lapsed claim", "PUT", "/api/datasets/{lapsed}/files/new.txt",
        **claimed(409), body=FILE, headers=LAPSED_CLAIM, stores=("lapsed", "new.txt")),
    Row("write a file on another's claim", "PUT", "/api/datasets/{theirs}/files/new.txt",
        **claimed(409), body=FILE, headers=THEIR_CLAIM, stores=("theirs", "new.txt")),
    Row("write a file of another's dataset on own claim", "PUT",
        "/api/datasets/{theirs}/files/new.txt", **claimed(409), body=FILE, headers=MY_CLAIM,
        stores=("theirs", "new.txt")),
    Row("write a bundle on own claim", "PUT", "/api/datasets/{mine}/bundle/", **claimed(200),
        body=TAR, headers=MY_CLAIM, stores=("mine", "bundled.txt")),
    Row("write a bundle on a lapsed claim", "PUT", "/api/datasets/{lapsed}/bundle/",
        **claimed(409), body=TAR, headers=LAPSED_CLAIM, stores=("lapsed", "bundled.txt")),
    Row("write a bundle on another's claim", "PUT", "/api/datasets/{theirs}/bundle/",
        **claimed(409), body=TAR, headers=THEIR_CLAIM, stores=("theirs", "bundled.txt")),
    Row("links to read, local storage", "POST", "/api/datasets/{dataset}/links/",
        **read_post(400), body={"read": ["result.txt"]}),
    Row("links to write on own claim, local storage", "POST", "/api/datasets/{mine}/links/",
        **claimed(400), body={"claim": "{my_claim}", "write": ONE_WRITE}),
    Row("links to read (S3)", "POST", "/api/datasets/{dataset}/links/", **read_post(200),
        body={"read": ["result.txt"]}, storage="s3"),
    Row("links to write on own claim (S3)", "POST", "/api/datasets/{mine}/links/",
        **claimed(200), body={"claim": "{my_claim}", "write": ONE_WRITE}, storage="s3"),
    Row("links to write without a claim (S3)", "POST", "/api/datasets/{mine}/links/",
        **claimed(409), body={"write": ONE_WRITE}, storage="s3"),
    Row("links to write on a lapsed claim (S3)", "POST", "/api/datasets/{lapsed}/links/",
        **claimed(409), body={"claim": "{lapsed_claim}", "write": ONE_WRITE}, storage="s3"),
    Row("links to write on another's claim (S3)", "POST", "/api/datasets/{theirs}/links/",
        **claimed(409), body={"claim": "{their_claim}", "write": ONE_WRITE}, storage="s3"),
    Row("complete an upload on own claim (S3)", "POST", "/api/datasets/{mine}/complete/",
        **claimed(204), storage="s3", stores=("mine", "big.bin"), body={
            "claim": "{my_claim}", "path": "big.bin", "upload_id": "{upload_id}",
            "etags": ["{etag}"]}),
    Row("complete an upload on a lapsed claim (S3)", "POST",
        "/api/datasets/{lapsed}/complete/", **claimed(409), storage="s3",
        stores=("lapsed", "big.bin"), body={
            "claim": "{lapsed_claim}", "path": "big.bin", "upload_id": "{upload_id}",
            "etags": ["{etag}"]}),
    Row("complete an upload on own claim, local storage", "POST",
        "/api/datasets/{mine}/complete/", **claimed(400), stores=("mine", "big.bin"), body={
            "claim": "{my_claim}", "path": "big.bin", "upload_id": "x", "etags": ["y"]}),
    Row("checksums on own claim", "POST", "/api/datasets/{mine}/checksums/", **claimed(200),
        body={"claim": "{my_claim}", "paths": ["result.txt"]}),
    Row("checksums on a lapsed claim", "POST", "/api/datasets/{lapsed}/checksums/",
        **claimed(409), body={"claim": "{lapsed_claim}", "paths": ["result.txt"]}),
    Row("checksums on another's claim", "POST", "/api/datasets/{theirs}/checksums/",
        **claimed(409), body={"claim": "{their_claim}", "paths": ["result.txt"]}),
    # Pages
    Row("project list page", "GET", "/", **everyone(200), session=True, lists=True),
    Row("project page", "GET", "/projects/{project}/", **read(), session=True),
    Row("dataset page", "GET", "/datasets/{dataset}/", **read(), session=True),
    Row("dataset file download", "GET", "/datasets/{dataset}/files/result.txt", **read(),
        session=True),
    # Admin
    Row("admin: projects", "GET", "/admin/crunch/project/", **STAFF_ONLY, session=True,
        lists=True),
    Row("admin: a project", "GET", "/admin/crunch/project/{project_id}/change/", **STAFF_ONLY,
        session=True),
    Row("admin: datasets", "GET", "/admin/crunch/dataset/", **STAFF_ONLY, session=True,
        lists=True),
    Row("admin: a dataset", "GET", "/admin/crunch/dataset/{dataset_id}/change/", **STAFF_ONLY,
        session=True),
)  # fmt: skip


def may_view(role: str, visibility: str) -> bool:
    """Whether the role sees the project at all (the table's own answer)."""
    detail = next(row for row in ROWS if row.name == "project detail")
    return detail.expected(role, visibility) == 200


def cells() -> Iterator[tuple[Row, str, str]]:
    """Every (row, role, visibility) the table answers."""
    for row in ROWS:
        for visibility in VISIBILITIES:
            for role in ROLES:
                yield row, role, visibility


def markdown() -> str:
    """The table as the Markdown of docs/permissions.md."""
    columns = [f"{role}, {visibility}" for visibility in VISIBILITIES for role in ROLES]
    lines = [
        "# Who may do what: HTTP status codes by role",
        "",
        "Generated from `tests/server/permission_table.py` by `scripts/permissions_doc.py`;",
        "`tests/server/test_permissions.py` checks every cell against a live server. Do not",
        "edit by hand. The admin's add, change and delete are [at the end](#the-admin).",
        "",
        "Roles (each column's user):",
        "",
        *(f"- *{role}*: {ROLE_HELP[role]}." for role in ROLES),
        "",
        "Every request is made on fresh data: a public and a private project, each with a",
        "dataset holding a file. A column's project is the public or the private one. Reading",
        "lists and peeks answer 200 to everyone but never show a private project to whoever",
        "has no role on it (every successful answer is checked for that). A private project",
        "answers 404, never 403, to whoever may not see it. The API takes",
        "`Authorization: Token <key>`; pages and the admin take a session.",
        "",
        "A dataset's files through the server (`--transfer server`): a write needs the",
        "process role (404 otherwise, on a public project too) and the dataset's live claim",
        "held by the user (409 otherwise), and a refused write stores nothing (each row that",
        "writes is checked for that). Rows marked (S3) run on an S3 storage (moto's server),",
        "which signs links; the others on local storage, which signs none (400).",
        "",
        "Names in braces in the paths and bodies:",
        "",
        *(f"- `{{{name}}}`: {text}." for name, text in PLACEHOLDERS.items()),
        "",
        "| Request | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in ROWS:
        request = f"{row.name}: `{row.method} {row.path}`"
        request += "".join(f" `{name}: {value}`" for name, value in row.headers.items())
        if isinstance(row.body, Raw):
            request += f" {row.body.shown}"
        elif row.body:
            request += f" `{format_body(row.body)}`"
        codes = []
        for visibility in VISIBILITIES:
            for role in ROLES:
                code = str(row.expected(role, visibility))
                codes.append(f"{code} (known bug)" if (role, visibility) in row.xfail else code)
        lines.append(f"| {request} | " + " | ".join(codes) + " |")
    known = [(row, cell, reason) for row in ROWS for cell, reason in row.xfail.items()]
    if known:
        lines += ["", "Known bugs (the code answers otherwise today):", ""]
        lines += [f"- {row.name}, {cell[0]}, {cell[1]}: {reason}" for row, cell, reason in known]
    from tests.server.admin_permission_table import admin_markdown

    lines += admin_markdown()
    return "\n".join(lines) + "\n"


def format_body(body: Any) -> str:
    import json

    return json.dumps(body).replace('"{public}"', "{public}").replace("|", "\\|")
