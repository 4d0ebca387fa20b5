"""The hot paths' shared serializers (crunch.api.prepared) answer exactly as new ones do."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from crunch.api import run_serializers as rs
from crunch.api import serializers as s
from crunch.api.prepared import Shared
from crunch.choices import DatasetState, Stage, State
from crunch.models import Status
from crunch.services import claims
from tests.factories import make_dataset, make_project, make_user

pytestmark = pytest.mark.django_db


def fresh(cls: type[serializers.Serializer[Any]], data: Any, *, many: bool = False) -> Any:
    """(valid, validated data, errors) of a new serializer, as the views made before."""
    serializer = cls(data=data, many=many)
    valid = serializer.is_valid()
    validated = serializer.validated_data if valid else None
    return valid, validated, serializer.errors


def shared(validate: Any, data: Any) -> Any:
    """The same triple from a Shared's validate or validate_many."""
    try:
        return True, validate(data), [] if isinstance(data, list) else {}
    except ValidationError as exc:
        return False, None, exc.detail


def test_the_shared_serializer_keeps_nothing_of_its_calls():
    # One instance serves every request (and thread): validating or showing leaves it as is.
    serializer = rs.STATUS.serializer
    before = dict(vars(serializer))
    rs.STATUS.validate({"dataset": 7, "stage": 1, "state": 1, "hostname": "h"})
    with pytest.raises(ValidationError):
        rs.STATUS.validate({"stage": 9})
    assert vars(serializer) == before
    assert not hasattr(serializer, "initial_data") and not hasattr(serializer, "_errors")


def test_statuses_datasets_and_projects_are_shown_as_new_serializers_show_them():
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
        ),
        Status.objects.create(
            dataset=done,
            stage=Stage.UPLOAD,
            state=State.FAIL,
            note="lost",
            workflow_sha256="a" * 64,
        ),
    ]
    for status in statuses:
        status.refresh_from_db()
        assert rs.STATUS.show(status) == rs.StatusSerializer(status).data
    for row in (dataset, done):
        row.refresh_from_db()
        assert rs.SHOWN_DATASET.show(row) == s.DatasetSerializer(row).data
    assert rs.SHOWN_PROJECT.show(project) == s.ProjectSerializer(project).data
    assert rs.STATUS.show_many(statuses) == rs.StatusSerializer(statuses, many=True).data


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
    {"dataset": 7, "stage": 1, "state": 1, "next": None, "key": None, "claim": None},
    [],
    "text",
    None,
]


@pytest.mark.parametrize("body", STATUS_BODIES, ids=range(len(STATUS_BODIES)))
def test_a_status_body_is_validated_as_a_new_serializer_validates_it(body):
    assert shared(rs.STATUS.validate, body) == fresh(rs.StatusSerializer, body)


BATCHES = [
    [STATUS_BODIES[0], STATUS_BODIES[1]],
    [STATUS_BODIES[0], STATUS_BODIES[3], STATUS_BODIES[4]],
    [STATUS_BODIES[2], "text"],
    [],
    {"dataset": 7},
    "text",
]


@pytest.mark.parametrize("batch", BATCHES, ids=range(len(BATCHES)))
def test_a_batch_is_validated_as_a_new_serializer_validates_it(batch):
    ours = shared(rs.STATUS.validate_many, batch)
    valid, validated, errors = fresh(rs.StatusSerializer, batch, many=True)
    assert ours == (valid, [dict(item) for item in validated] if valid else None, errors)


def test_a_dataset_whose_time_is_not_utc_is_shown_as_a_new_serializer_shows_it(settings):
    settings.TIME_ZONE = "Europe/Paris"
    dataset = make_dataset(make_project(name="Zone"), name="Z")
    dataset.lease_expires = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
    assert rs.SHOWN_DATASET.show(dataset) == s.DatasetSerializer(dataset).data


@pytest.mark.parametrize("start", [None, {"hostname": "node-1"}])
def test_a_claim_is_shown_as_its_fields_show_it(start):
    project = make_project(name="Claimed", description="# Read me")
    make_dataset(project, name="Next")
    claim = claims.claim_next(holder="node-1", project=project, lease_seconds=60, start=start)
    assert claim is not None
    generic = serializers.Serializer.to_representation(rs.ClaimedDatasetSerializer(), claim)
    assert rs.CLAIMED.show(claim) == generic == rs.ClaimedDatasetSerializer(claim).data
    assert generic["started"] is (start is not None)
    assert rs.SHOWN_CLAIM.show(claim) == rs.ClaimSerializer(claim).data


CLAIM_BODIES = [
    {"holder": "h", "lease_seconds": 60, "key": "k", "start": {"hostname": "h"}, "project": "p"},
    {"lease_seconds": 1, "start": []},
    {"key": "k" * 65, "holder": None, "start": {"memory_total": "lots"}},
    {},
    "text",
]


@pytest.mark.parametrize("body", CLAIM_BODIES, ids=range(len(CLAIM_BODIES)))
def test_a_claim_request_is_validated_as_a_new_serializer_validates_it(body):
    ours = shared(rs.CLAIM_REQUEST.validate, body)
    assert ours == fresh(rs.ClaimRequestSerializer, body)


def test_a_form_post_is_validated_by_a_new_serializer():
    # Not a JSON object: DRF's own path, with the request's context (QueryDict, html input).
    from django.http import QueryDict

    form = QueryDict("holder=h&lease_seconds=60")
    assert rs.CLAIM_REQUEST.validate(form) == {"holder": "h", "lease_seconds": 60}


def test_a_serializer_is_made_once_per_shared():
    shared_status: Shared[rs.StatusSerializer] = Shared(rs.StatusSerializer)
    first = shared_status.serializer
    shared_status.validate(STATUS_BODIES[0])
    shared_status.show_many([])
    assert shared_status.serializer is first
