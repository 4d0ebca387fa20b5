"""The wire contract: the client's typed objects are what the server's serializers send."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest
from rest_framework.utils.encoders import JSONEncoder

from crunch.api.run_serializers import ClaimedDatasetSerializer, ClaimSerializer
from crunch.api.serializers import DatasetSerializer, ProjectSerializer
from crunch.choices import DatasetState, WorkflowKind
from crunch.services import claim_next
from crunchclient import Claim, DatasetInfo, ProjectInfo
from crunchclient.exceptions import ServerError
from tests.factories import make_dataset, make_project


def names(cls: type) -> set[str]:
    return {item.name for item in dataclasses.fields(cls)} - {"raw"}


def test_fields_are_the_serializers_fields() -> None:
    assert names(ProjectInfo) == set(ProjectSerializer().fields)
    assert names(DatasetInfo) == set(DatasetSerializer().fields)
    assert names(Claim) == set(ClaimSerializer().fields) | {"dataset", "project", "started"}
    assert set(ClaimedDatasetSerializer().fields) == {"claim", "started", "dataset", "project"}


@pytest.mark.django_db
def test_the_servers_claim_parses() -> None:
    project = make_project(
        name="Wire", workflow="#!/usr/bin/env python3\n", workflow_kind="executable"
    )
    make_dataset(project, name="one", base_file_path="wire/one")
    claimed = claim_next(holder="test", lease_seconds=60)
    assert claimed is not None
    data = json.loads(json.dumps(ClaimedDatasetSerializer(claimed).data, cls=JSONEncoder))

    claim = Claim.from_wire(data)

    assert claim.id == uuid.UUID(data["claim"]["id"])
    assert claim.holder == "test"
    assert claim.lease_expires is not None and claim.lease_expires.tzinfo is not None
    assert claim.dataset.slug == data["dataset"]["slug"]
    assert claim.dataset.project == project.slug
    assert claim.dataset.base_file_path == "wire/one"
    assert claim.dataset.state == DatasetState.RUNNING
    assert claim.project.workflow_kind is WorkflowKind.EXECUTABLE
    assert claim.project.max_attempts == project.max_attempts
    assert claim.dataset.raw == data["dataset"]  # the .crunch/ records, as sent
    assert claim.project.raw == data["project"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.holder = "other"  # type: ignore[misc]


def test_a_field_missing_is_one_clear_line() -> None:
    with pytest.raises(ServerError, match="without 'slug'"):
        ProjectInfo.from_wire({"id": 1})
    with pytest.raises(ServerError, match="without its 'claim' object"):
        Claim.from_wire({"dataset": {}})


@pytest.mark.django_db
def test_a_project_from_a_server_before_pausing_parses_as_not_paused() -> None:
    project = make_project(name="Old")
    data = json.loads(json.dumps(ProjectSerializer(project).data, cls=JSONEncoder))
    assert ProjectInfo.from_wire(data).paused is False
    del data["paused"]  # a server of 0.2 sends no such field
    assert ProjectInfo.from_wire(data).paused is False
    data["paused"] = True
    assert ProjectInfo.from_wire(data).paused is True


@pytest.mark.django_db
def test_a_projects_container_parses_and_an_older_server_gives_none() -> None:
    project = make_project(name="Boxed", container="docker://rocker/r-ver:4.4")
    data = json.loads(json.dumps(ProjectSerializer(project).data, cls=JSONEncoder))
    assert ProjectInfo.from_wire(data).container == "docker://rocker/r-ver:4.4"
    del data["container"]  # a server before issue 26 sends no such field
    assert ProjectInfo.from_wire(data).container == ""


def test_an_image_digest_is_sent_only_when_there_is_one() -> None:
    from crunch.choices import Stage, State
    from crunchclient.server.bodies import StatusReport

    plain = StatusReport(dataset=1, stage=Stage.WORKFLOW, state=State.START, claim="c")
    assert "image_digest" not in plain.to_wire()
    digest = "sha256:" + "ab" * 32
    boxed = StatusReport(
        dataset=1, stage=Stage.WORKFLOW, state=State.START, claim="c", image_digest=digest
    )
    assert boxed.to_wire()["image_digest"] == digest


def test_what_the_client_sends_has_the_serializers_fields() -> None:
    """The outgoing dataclasses write the fields the server's serializers read."""
    from crunch.api.run_serializers import (
        ClientSerializer,
        NextClaimSerializer,
        StartSerializer,
        StatusSerializer,
    )
    from crunch.choices import Stage, State
    from crunchclient.server.bodies import Diagnostics, NextRequest, StatusReport

    assert names(Diagnostics) == set(StartSerializer().fields)
    facts = Diagnostics(**dict.fromkeys(names(Diagnostics), "x"))
    ask = NextRequest(
        holder="h", lease_seconds=60, start=facts, project="p", count=2, slots=(0, 1),
        client={"holder": "h", "slots": 2}, memory=2**30, seconds=60,
    )  # fmt: skip
    assert set(ask.to_wire()) == set(NextClaimSerializer().fields)
    assert set(ask.to_wire()["client"]) <= set(ClientSerializer().fields)
    report = StatusReport(
        dataset=1, stage=Stage.UPLOAD, state=State.FAIL, claim="c", diagnostics=facts,
        extra={"workflow_sha256": "0" * 64, "results": {"n": 1}},
        image_digest="sha256:" + "0" * 64, slot=3,
        reason="out-of-memory", reason_detail="probably", memory=2**30, seconds=60,
        made=time.monotonic() - 1,  # queued a second ago: it says its age
    )  # fmt: skip
    sent = set(report.to_wire(next=ask))
    assert sent <= set(StatusSerializer().fields)
    assert set(StatusSerializer().fields) - sent == {
        "id", "created", "dataset_slug", "dataset_state", "dataset_retry_at", "stage_name",
        "state_name",
    }  # what only the answer holds  # fmt: skip
