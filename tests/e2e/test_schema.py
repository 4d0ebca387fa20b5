"""Issue 11's "Must show" 3: Schemathesis fuzzes every operation of ``api/schema/``.

As a maintainer and as a worker, against the testproject under gunicorn on a fresh
SQLite file (``make test``) and on a fresh PostgreSQL database (``make test-postgres``,
marker ``postgres``): no response is a 500, and every documented response matches the
schema. The run is bounded (a few examples per operation) and repeatable (a fixed seed).

The schema is the one ``api/schema/`` serves, read through Django's test client when the
module is imported (the tests are made from it, before any server runs).

Path parameters are drawn half the time from objects that exist, so the fuzzed bodies
reach the serializers and services and not only the 404 of an unknown slug. DELETE only
ever gets the objects made to be deleted.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
)

from tests.clientkit import free_port
from tests.servers import GunicornServer, fresh_database, manage

EXAMPLES = int(os.environ.get("CRUNCH_FUZZ_EXAMPLES", "8"))
SEED = 11
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class Target:
    """A server, the tokens of its two fuzzing users, and the objects that exist on it."""

    url: str
    tokens: dict[str, str]
    role: str = "maintainer"
    known: dict[str, list[str]] = field(default_factory=dict)
    doomed: dict[str, list[str]] = field(default_factory=dict)

    def call(self, method: str, path: str, role: str = "maintainer", **body: Any) -> Any:
        response = requests.request(
            method, f"{self.url}/api/{path}", json=body or None, timeout=30,
            headers={"Authorization": f"Token {self.tokens[role]}"},
        )  # fmt: skip
        assert response.status_code < 400, (path, response.status_code, response.text)
        return response.json() if response.content else None


def populate(target: Target, tag: str) -> None:
    """Projects, datasets, items, attributes, statuses and claims of both users, over HTTP."""
    slugs: dict[str, list[str]] = {
        "project": [], "dataset": [], "item": [], "claim": [], "claimed": [],
    }  # fmt: skip
    doomed: dict[str, list[str]] = {"project": [], "dataset": [], "item": []}
    for name, bucket in ((f"fuzz {tag}", slugs), (f"fuzz {tag} doomed", doomed)):
        project = target.call("POST", "projects/", name=name, workflow="echo hi > out.txt\n")
        bucket["project"].append(project["slug"])
        for index in range(3):
            dataset = target.call("POST", "datasets/", parent=project["slug"], name=f"d{index}")
            bucket["dataset"].append(dataset["slug"])
            item = target.call("POST", "items/", parent=dataset["slug"], name=f"i{index}")
            bucket["item"].append(item["slug"])
            target.call("POST", "attributes/int/", item=item["slug"], key="n", value=index)
    project = slugs["project"][0]
    target.call("POST", "attributes/char/", item=project, key="owner", value="fuzz")
    for role in ("worker", "maintainer"):
        claimed = target.call("POST", f"projects/{project}/next/", role, holder=role)
        slugs["claim"].append(claimed["claim"]["id"])
        slugs["claimed"].append(claimed["dataset"]["slug"])
        target.call(
            "POST", "statuses/", role, dataset=claimed["dataset"]["slug"], stage=1, state=1,
            claim=claimed["claim"]["id"],
        )  # fmt: skip
    target.known, target.doomed = slugs, doomed


def path_kind(path: str) -> str:
    """Which kind of object a path's ``{slug}`` names: projects/{slug}/ -> 'project'."""
    head = path.removeprefix("/api/").split("/", 1)[0]
    return {"projects": "project", "datasets": "dataset", "items": "item"}.get(head, "")


def served_schema() -> dict[str, Any]:
    """What ``GET api/schema/`` answers, as JSON."""
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return dict(json.loads(response.content))


CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "request-timeout": 20,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
        # The coverage phase tries every boundary of every field: minutes per operation.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
# The schema itself has no input to fuzz, and each answer costs a full generation.
schema = schemathesis.openapi.from_dict(served_schema(), config=CONFIG).exclude(path="/api/schema/")
CURRENT: list[Target] = []
"""The target of the running test, for the hooks below (hooks belong to the schema)."""
# A tar body is bytes as an octet-stream's is; the hook below makes real tars too.
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
MEMBER_TYPES = [tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                tarfile.DIRTYPE, tarfile.FIFOTYPE]  # fmt: skip
HOSTILE_NAMES = ["ok.txt", "../x", "a/../../x", "/etc/x", "a\\b", "x.crunch-partial-1",
                 "a" * 2000, "dir/", ".", "é/ü.txt"]  # fmt: skip


def tar_body(members: list[tuple[str, bytes, bytes, int]]) -> bytes:
    """A tar stream of (name, type, data, size announced) members; a truncated one too."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data, size in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "../../elsewhere" if kind != tarfile.REGTYPE else ""
            info.size = size if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data.ljust(info.size, b"\0")))
    whole = buffer.getvalue()
    return whole if all(len(data) >= size for _n, _k, data, size in members) else whole[:700]


TARS = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(min_size=1, max_size=30)),
        st.sampled_from(MEMBER_TYPES),
        st.binary(max_size=64),
        st.integers(0, 5000),
    ),
    max_size=4,
).map(tar_body)


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """A bundle's body: half the time a real tar of hostile members."""
    operation = context.operation
    if operation.method.upper() == "PUT" and operation.path.endswith("/bundle/"):
        return st.one_of(st.just(body), TARS)
    return st.just(body)


@schema.hook
def flatmap_headers(context: Any, headers: dict[str, Any] | None) -> Any:
    """Half the time a claim that is live, so that writes reach the storage."""
    operation = context.operation
    writes = operation.method.upper() == "PUT" and "/api/datasets/{slug}/" in operation.path
    if not writes or not CURRENT:
        return st.just(headers)
    claims = CURRENT[-1].known["claim"]
    return st.one_of(
        st.just(headers),
        st.sampled_from(claims).map(lambda claim: {**(headers or {}), "X-Crunch-Claim": claim}),
    )


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time, objects that exist; DELETE only ever the ones made for it."""
    if not path_parameters or not CURRENT:
        return st.just(path_parameters)
    target, operation = CURRENT[-1], context.operation
    deleting = operation.method.upper() == "DELETE"
    choices: dict[str, list[Any]] = {}
    if "slug" in path_parameters and (kind := path_kind(operation.path)):
        choices["slug"] = (target.doomed if deleting else target.known)[kind]
        if operation.method.upper() == "PUT" and "{slug}/" in operation.path:
            choices["slug"] = target.known["claimed"]  # files written on a claim
    if "claim_id" in path_parameters:
        choices["claim_id"] = target.known["claim"]
    if not choices:
        return st.just(path_parameters)
    known = st.fixed_dictionaries(
        {name: st.sampled_from(values) for name, values in choices.items()}
    ).map(lambda chosen: {**path_parameters, **chosen})
    return known if deleting else st.one_of(st.just(path_parameters), known)


def server_env(database_url: str, media: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUNCH_", "DJANGO_"))}
    env.update(DATABASE_URL=database_url, CRUNCH_MEDIA_ROOT=str(media), DJANGO_DEBUG="0")
    return env


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database of ``kind``: a SQLite file, or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'fuzz.sqlite3'}"
        return
    with fresh_database(f"crunch_fuzz_{os.getpid()}_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """gunicorn (2 workers) on a fresh database, with a site-wide maintainer and worker."""
    folder = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with database(request.param, folder) as database_url:
        media = folder / "media"
        media.mkdir()
        env = server_env(database_url, media)
        manage("migrate", "--verbosity", "0", env=env)
        tokens = {
            role: manage("crunch_token", f"fuzz-{role}", "--role", role, env=env) for role in ROLES
        }
        server = GunicornServer(port=free_port(), env=env, log=folder / "gunicorn.log", workers=2)
        server.start(timeout=60)
        try:
            yield Target(url=server.url, tokens=tokens)
        finally:
            server.stop()


ROLES = ["maintainer", "worker"]
POPULATED: dict[tuple[str, str], Target] = {}


@pytest.fixture(params=ROLES)
def target(server: Target, request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server as ``role`` sees it, with objects made once per server and role."""
    role = str(request.param)
    key = (server.url, role)
    if key not in POPULATED:
        POPULATED[key] = Target(url=server.url, tokens=server.tokens, role=role)
        populate(POPULATED[key], role)
    CURRENT.append(POPULATED[key])
    yield POPULATED[key]
    CURRENT.pop()


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_schema(case: Any, target: Target) -> None:
    case.call_and_validate(
        base_url=target.url, headers={"Authorization": f"Token {target.tokens[target.role]}"},
        checks=CHECKS,
    )  # fmt: skip
