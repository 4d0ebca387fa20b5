"""The serializers' fast paths (crunch.api.fields_once) answer exactly as DRF's own would."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers

from crunch.api import run_serializers as rs
from crunch.api import serializers as s
from crunch.api.fields_once import FieldsOnce, plan_for
from crunch.choices import DatasetState, Stage, State
from crunch.models import Status
from crunch.services import claims
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db

SHOWN = [s.DatasetSerializer, s.ProjectSerializer, rs.StatusSerializer, rs.StartSerializer]


def drf_shows(cls: type[FieldsOnce], instance: Any) -> dict[str, Any]:
    """What DRF's generic to_representation gives for ``instance``."""
    return dict(serializers.ModelSerializer.to_representation(cls(), instance))


def drf_validates(cls: type[FieldsOnce], data: Any) -> tuple[bool, Any, Any]:
    """(valid, validated data, errors) with every field asked, as DRF does."""
    serializer = cls(data=data)
    serializer.to_internal_value = (  # type: ignore[method-assign]
        lambda value: serializers.ModelSerializer.to_internal_value(serializer, value)
    )
    valid = serializer.is_valid()
    return valid, dict(serializer.validated_data) if valid else None, serializer.errors


def ours_validates(cls: type[FieldsOnce], data: Any) -> tuple[bool, Any, Any]:
    serializer = cls(data=data)
    valid = serializer.is_valid()
    return valid, dict(serializer.validated_data) if valid else None, serializer.errors


@pytest.mark.parametrize("cls", SHOWN)
def test_every_wire_serializer_has_a_plan(cls):
    assert plan_for(cls) is not None


def test_statuses_datasets_and_projects_are_shown_as_drf_shows_them():
    user, _ = make_user("node", role="worker")
    project = make_project(name="Shown", description="*x*", is_public=True, max_attempts=3)
    dataset = make_dataset(project, name="One", priority=-5)
    done = make_dataset(project, name="Two", state=DatasetState.COMPLETED,
                        finished=timezone.now(), note="done")  # fmt: skip
    claim = uuid.uuid4()
    statuses = [
        Status.objects.create(
            dataset=dataset,
            stage=Stage.SETUP,
            state=State.START,
            claim_id=claim,
            key="k1",
            user=user,
            hostname="node-1",
            memory_total=2**40,
            disk_free=0,
            slurm_job_id="17",
        ),  # fmt: skip
        Status.objects.create(
            dataset=done,
            stage=Stage.UPLOAD,
            state=State.FAIL,
            note="lost",
            workflow_sha256="a" * 64,
        ),  # fmt: skip
    ]
    for status in statuses:
        status.refresh_from_db()
        for cls in (rs.StatusSerializer, rs.StartSerializer):
            assert cls(status).data == drf_shows(cls, status)
    for row in (dataset, done):
        row.refresh_from_db()
        assert s.DatasetSerializer(row).data == drf_shows(s.DatasetSerializer, row)
    assert s.ProjectSerializer(project).data == drf_shows(s.ProjectSerializer, project)
    many = rs.StatusSerializer(statuses, many=True).data
    assert many == [drf_shows(rs.StatusSerializer, status) for status in statuses]


STATUS_BODIES = [
    {"dataset": "p:d", "stage": 1, "state": 2, "claim": str(uuid.uuid4()), "key": "k"},
    {"dataset": 7, "stage": "setup", "state": "start", "hostname": "h", "memory_total": 5},
    {"dataset": 7, "stage": 1, "state": 1, "next": {"holder": "h", "start": {"hostname": "h"}}},
    {"dataset": "x", "stage": 9, "state": "nope", "memory_free": "lots", "claim": "no"},
    {"stage": 1},
    {"dataset": 7, "stage": 1, "state": 1, "key": "k" * 65, "workflow_sha256": "A" * 64},
    {"dataset": 7, "stage": 1, "state": 1, "next": {"lease_seconds": 1, "start": []}},
    {"dataset": "a\x00b", "stage": 1, "state": 1, "hostname": "h" * 10_000},
    {"dataset": 7, "stage": 1, "state": 1, "unknown": "ignored", "note": None},
    [],
    "text",
]


@pytest.mark.parametrize("body", STATUS_BODIES, ids=range(len(STATUS_BODIES)))
def test_a_status_body_is_validated_as_drf_validates_it(body):
    assert ours_validates(rs.StatusSerializer, body) == drf_validates(rs.StatusSerializer, body)


def test_a_project_body_gets_its_defaults_as_drf_gives_them():
    body = {"name": "Defaults", "workflow": "true\n"}
    ours, drf = ours_validates(s.ProjectSerializer, body), drf_validates(s.ProjectSerializer, body)
    assert ours == drf and ours[0]


def test_a_dataset_whose_time_is_not_utc_is_shown_as_drf_shows_it(settings):
    settings.TIME_ZONE = "Europe/Paris"
    dataset = make_dataset(make_project(name="Zone"), name="Z")
    dataset.lease_expires = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
    assert s.DatasetSerializer(dataset).data == drf_shows(s.DatasetSerializer, dataset)


@pytest.mark.parametrize("start", [None, {"hostname": "node-1"}])
def test_a_claim_is_shown_as_drf_shows_it(start):
    project = make_project(name="Claimed", description="# Read me")
    make_dataset(project, name="Next")
    claim = claims.claim_next(holder="node-1", project=project, lease_seconds=60, start=start)
    assert claim is not None
    generic = serializers.Serializer.to_representation(rs.ClaimedDatasetSerializer(), claim)
    assert rs.ClaimedDatasetSerializer(claim).data == generic
    assert generic["started"] is (start is not None)


CLAIM_BODIES = [
    {"holder": "h", "lease_seconds": 60, "key": "k", "start": {"hostname": "h"}, "project": "p"},
    {"lease_seconds": 1, "start": []},
    {"key": "k" * 65, "holder": None, "start": {"memory_total": "lots"}},
    {},
    "text",
]


@pytest.mark.parametrize("body", CLAIM_BODIES, ids=range(len(CLAIM_BODIES)))
def test_a_claim_request_is_validated_as_drf_validates_it(body):
    ours = rs.NextClaimSerializer(data=body)
    drf = rs.NextClaimSerializer(data=body)
    drf.get_fields = lambda: serializers.Serializer.get_fields(drf)  # type: ignore[method-assign]
    assert ours.is_valid() == drf.is_valid()
    assert ours.errors == drf.errors
    if not ours.errors:
        assert ours.validated_data == drf.validated_data


def test_a_claim_and_its_renewal_are_shown_as_drf_shows_them():
    project = make_project(name="Renewed")
    make_dataset(project, name="Held")
    claim = claims.claim_next(holder="node-1", project=project, lease_seconds=60)
    assert claim is not None
    for cls in (rs.ClaimSerializer, rs.RenewedSerializer):
        generic = cls()
        generic.get_fields = lambda g=generic: serializers.Serializer.get_fields(g)  # type: ignore[method-assign]
        assert cls(claim).data == generic.to_representation(claim)
