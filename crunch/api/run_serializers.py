"""The shapes of a worker's calls: statuses, claims and what a claim answers.

The projects, datasets and items they show are crunch.api.serializers'.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from crunch.api.prepared import Shared
from crunch.api.run_fields import (  # noqa: F401  (re-exported: crunch.api uses them as rs.*)
    ChoiceByNumberOrName,
    DatasetByIdOrSlug,
    LabelOf,
    ReasonField,
    StatusObject,
    failure_of,
    no_dataset,
    reason_field,
)  # fmt: skip
from crunch.api.serializers import INT32, DatasetSerializer, ProjectSerializer
from crunch.choices import FailReason, Stage, State
from crunch.constants import INT64
from crunch.models import Status
from crunch.models.statuses import IMAGE_DIGEST
from crunch.services.counted_claims import MAX_COUNT
from crunch.services.leases import MAX_RENEWED
from crunch.services.statuses import DIAGNOSTIC_FIELDS, FAILURE_MAX


class StartSerializer(serializers.ModelSerializer[Status]):
    """The diagnostics of a run's Setup Start, recorded with its claim."""

    class Meta:
        model = Status
        fields = list(DIAGNOSTIC_FIELDS)
        extra_kwargs = {name: {"required": False} for name in DIAGNOSTIC_FIELDS}


class ClientSerializer(serializers.Serializer[Any]):
    """A loop describing itself: the slots it runs, shown on the pages with those busy."""

    holder = serializers.CharField(
        max_length=255, required=False, allow_blank=True,
        help_text="The holder its claims carry (default: this request's holder).",
    )  # fmt: skip
    slots = serializers.IntegerField(min_value=1, max_value=4096, default=1)
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True)
    slurm_job_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    slurm_array_task_id = serializers.CharField(max_length=64, required=False, allow_blank=True)


COUNTED_KEY = 60
"""A key's length with ``count``: each claim's key is ``key:i`` (at most 64 characters)."""


class ClaimRequestSerializer(serializers.Serializer[Any]):
    holder = serializers.CharField(
        max_length=255, required=False, allow_blank=True,
        help_text="Who claims: shown on the pages (e.g. user@host pid 123).",
    )  # fmt: skip
    lease_seconds = serializers.IntegerField(
        min_value=5, max_value=7 * 24 * 3600, required=False,
        help_text="How long the claim lives without a heartbeat.",
    )  # fmt: skip
    key = serializers.CharField(
        max_length=64, required=False, allow_blank=True,
        help_text="Any string unique among your claims; a request retried with the same key "
        "gets the same claim.",
    )  # fmt: skip
    start = StartSerializer(
        required=False,
        help_text="Record the run's Setup Start with the claim (one call less per dataset), "
        "with these diagnostics; the answer's 'started' says it was.",
    )  # fmt: skip
    count = serializers.IntegerField(
        min_value=1, max_value=MAX_COUNT, required=False,
        help_text=f"Claim up to this many datasets at once (1-{MAX_COUNT}); the answer is then "
        "always 200 {'claims': [...]}, empty when none is left. The i-th claim (from 0) has "
        "the key 'key:i' (the key: at most 60 characters).",
    )  # fmt: skip
    slots = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=32767), required=False,
        max_length=MAX_COUNT,
        help_text="With count and start: the slot of each claim's Setup Start, in order.",
    )  # fmt: skip
    client = ClientSerializer(
        required=False, help_text="The loop making the claim, recorded with its slots."
    )
    memory = serializers.IntegerField(
        min_value=0, max_value=INT64[1], required=False, allow_null=True,
        help_text="Bytes of memory the client can give one dataset: a dataset that needs more "
        "(its last run ran out of memory) is left for another claim. Not given: only datasets "
        "that need no more memory than any.",
    )  # fmt: skip
    seconds = serializers.IntegerField(
        min_value=0, max_value=INT32[1], required=False, allow_null=True,
        help_text="Seconds the client can give one dataset, alike for datasets whose last run "
        "hit its time limit.",
    )  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("count") is not None and len(attrs.get("key") or "") > COUNTED_KEY:
            raise serializers.ValidationError(
                {"key": [f"With count, a key has at most {COUNTED_KEY} characters."]}
            )
        return attrs


class NextClaimSerializer(ClaimRequestSerializer):
    project = serializers.CharField(
        max_length=1023, required=False, allow_blank=True,
        help_text="Claim from this project only (its slug).",
    )  # fmt: skip


class StatusSerializer(serializers.ModelSerializer[Status]):
    dataset = DatasetByIdOrSlug(help_text="The dataset's id (as django-crunch 0.1 sends) or slug.")
    stage = ChoiceByNumberOrName(Stage)
    state = ChoiceByNumberOrName(State)
    claim = serializers.UUIDField(
        source="claim_id", required=False, allow_null=True, write_only=True,
        help_text="The claim this status reports on; never shown (only its holder knows it).",
    )  # fmt: skip
    key = serializers.CharField(
        max_length=64, required=False, allow_blank=True, allow_null=True,
        help_text="Any string unique among your statuses on the dataset; a post retried with "
        "the same key is recorded once.",
    )  # fmt: skip
    workflow_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}\Z", required=False, allow_blank=True,
        error_messages={"invalid": "Give the SHA-256 as 64 lowercase hexadecimal digits."},
        help_text="SHA-256 of the workflow the client ran (sent with Workflow Start).",
    )  # fmt: skip
    image_digest = serializers.RegexField(
        IMAGE_DIGEST, required=False, allow_blank=True, max_length=200,
        error_messages={
            "invalid": "Give the image digest as 'sha256:' and 64 lowercase hexadecimal digits."
        },
        help_text="Digest of the container image the workflow ran in (sent with Workflow "
        "Start when the project names a container).",
    )  # fmt: skip
    next = NextClaimSerializer(
        write_only=True, required=False,
        help_text="With an Upload Success: claim the next dataset in the same call; the "
        "answer's 'next' holds the claim (null when none is left).",
    )  # fmt: skip
    age = serializers.FloatField(
        write_only=True, required=False, min_value=0, max_value=86400,
        help_text="How many seconds before this call the status happened (a loop queues a "
        "status that needs no answer to go with a later call, see crunch loop --slots): it is "
        "recorded at the server's time minus this, never before its run's claim.",
    )  # fmt: skip
    dataset_slug = serializers.CharField(source="dataset.slug", read_only=True)
    dataset_state = serializers.CharField(
        source="dataset.state", read_only=True,
        help_text="The dataset's state after this status ('pending' after a Fail: retried).",
    )  # fmt: skip
    dataset_retry_at = serializers.DateTimeField(
        source="dataset.not_before", read_only=True, allow_null=True,
        help_text="After a Fail that is retried: when the dataset may be claimed again.",
    )  # fmt: skip
    stage_name = LabelOf(Stage, source="stage")
    state_name = LabelOf(State, source="state")
    reason = reason_field(
        help_text="A Fail's reason (a Fail without one is recorded as 'unknown'); only on a Fail."
    )
    reason_detail = serializers.CharField(
        required=False, allow_blank=True, max_length=FAILURE_MAX,
        help_text="The reason's particulars: the exit code ('3'), the signal ('SIGKILL'), "
        "'probably' (an exit 137 read as out of memory), 'wall-time' (the task's deadline), "
        "the missing tool's name.",
    )  # fmt: skip
    memory = serializers.IntegerField(
        min_value=0, max_value=INT64[1], required=False, allow_null=True,
        help_text="A Fail's bytes of memory the run had: after an out-of-memory Fail the "
        "dataset goes only to claims announcing more.",
    )  # fmt: skip
    seconds = serializers.IntegerField(
        min_value=0, max_value=INT32[1], required=False, allow_null=True,
        help_text="A Fail's time limit in seconds: after a time-limit Fail (not 'wall-time') "
        "the dataset goes only to claims announcing more.",
    )  # fmt: skip
    results = serializers.DictField(
        write_only=True, required=False,
        help_text="With an Upload Success only: what the workflow reported in "
        "$CRUNCH_RESULTS, a flat object of at most 200 keys (see docs/how-it-works/"
        "results.md). Stored typed with the status, replacing the dataset's results; a value "
        "the project's schema refuses refuses the status (400, naming the dataset and key).",
    )  # fmt: skip

    class Meta:
        model = Status
        fields = [
            "id", "dataset", "dataset_slug", "dataset_state", "dataset_retry_at", "stage",
            "stage_name", "state",
            "state_name", "note", "reason", "reason_detail", "memory", "seconds", "claim", "key",
            "workflow_sha256", "image_digest", "next", "age", "created", "slot", "results",
            *DIAGNOSTIC_FIELDS,
        ]  # fmt: skip
        read_only_fields = ["created"]
        extra_kwargs = {
            **{name: {"required": False} for name in DIAGNOSTIC_FIELDS},
            "slot": {
                "required": False,
                "max_value": 32767,
                "help_text": "Which slot of its loop (crunch loop --slots) ran it, from 0.",
            },
            "note": {
                "help_text": "Free text, e.g. the end of a failure's output. Past "
                "CRUNCH_NOTE_MAX_BYTES (16 KiB) its first and last halves are kept, with "
                "'[... N bytes cut ...]' between them."
            },
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("state") != State.FAIL:
            given = [n for n in ("reason", "reason_detail", "memory", "seconds") if attrs.get(n)]
            if given:
                raise serializers.ValidationError(
                    {given[0]: ["Only a Fail has a reason, a memory or a time limit."]}
                )
        upload_success = (attrs.get("stage"), attrs.get("state")) == (Stage.UPLOAD, State.SUCCESS)
        if "results" in attrs and not upload_success:
            raise serializers.ValidationError({"results": ["Only an Upload Success has results."]})
        return attrs


MAX_BATCH = 1024
"""The most statuses one batch may carry."""


class RenewedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    lease_expires = serializers.DateTimeField()


class ClaimSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    holder = serializers.CharField()
    lease_expires = serializers.DateTimeField()
    attempt = serializers.IntegerField(
        help_text="Which attempt of the dataset this run is: 1, 2, ... (CRUNCH_ATTEMPT)."
    )
    last_reason = serializers.CharField(
        help_text="Why its previous run failed ('' for none): CRUNCH_LAST_REASON."
    )
    last_reason_detail = serializers.CharField()


class ClaimedDatasetSerializer(serializers.Serializer[Any]):
    """What a claim returns: the claim, the dataset, and its project with the workflow."""

    claim = serializers.SerializerMethodField()
    started = serializers.BooleanField(help_text="Whether the Setup Start was recorded too.")
    dataset = DatasetSerializer()
    project = ProjectSerializer(source="dataset.project")

    def get_claim(self, claim: Any) -> dict[str, Any]:
        return SHOWN_CLAIM.show(claim)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # What the fields above give, with the nested serializers made once (see Shared).
        dataset = instance.dataset
        return {
            "claim": self.get_claim(instance),
            "started": bool(instance.started),
            "dataset": SHOWN_DATASET.show(dataset),
            "project": SHOWN_PROJECT.show(dataset.project),
        }


class ClaimsSerializer(serializers.Serializer[Any]):
    """What a claim with ``count`` answers: the claims made, in queue order."""

    claims = ClaimedDatasetSerializer(many=True)


class BatchRequestSerializer(serializers.Serializer[Any]):
    """The object form of a batch: statuses of any datasets, and the next claims."""

    statuses = serializers.ListField(
        child=StatusObject(), max_length=MAX_BATCH,
        help_text="Statuses as posted alone, of any datasets; each answered on its own.",
    )  # fmt: skip
    next = NextClaimSerializer(
        required=False,
        help_text="Claim the next datasets once the statuses are recorded (with count: "
        "the answer's 'claims').",
    )  # fmt: skip


class BatchStatusSerializer(serializers.ModelSerializer[Status]):
    """A status recorded by a batch's object form, as a loop reads it: which status it is
    and the dataset's state after it. Not the whole status: a loop with slots sends dozens
    a call, and their diagnostics, sent by the loop itself, would only travel back."""

    dataset_slug = serializers.CharField(source="dataset.slug", read_only=True)
    dataset_state = serializers.CharField(source="dataset.state", read_only=True)
    dataset_retry_at = serializers.DateTimeField(
        source="dataset.not_before", read_only=True, allow_null=True
    )
    stage = ChoiceByNumberOrName(Stage, read_only=True)
    state = ChoiceByNumberOrName(State, read_only=True)

    class Meta:
        model = Status
        fields = [
            "id", "dataset", "dataset_slug", "dataset_state", "dataset_retry_at", "stage",
            "state", "key", "created",
        ]  # fmt: skip
        read_only_fields = fields


class BatchItemSerializer(serializers.Serializer[Any]):
    code = serializers.IntegerField(
        help_text="201 recorded, 200 recorded before (a retry), "
        "else the code this status alone would get."
    )
    status = BatchStatusSerializer(
        required=False,
        help_text="The status, when recorded: its id, dataset, stage, state, key and time, "
        "and the dataset's state after it ('GET api/statuses/<id>/' shows the rest).",
    )  # fmt: skip
    detail = serializers.CharField(required=False, help_text="Why it was refused.")


class BatchResultSerializer(serializers.Serializer[Any]):
    results = BatchItemSerializer(many=True, help_text="One per status, in order.")
    claims = ClaimedDatasetSerializer(
        many=True, required=False, help_text="The claims of 'next', when it was given."
    )
    next = ClaimedDatasetSerializer(
        required=False, allow_null=True, help_text="The claim of 'next' given without count."
    )


class RenewAllSerializer(serializers.Serializer[Any]):
    claims = serializers.ListField(child=serializers.UUIDField(), max_length=MAX_RENEWED)
    lease_seconds = serializers.IntegerField(
        min_value=5, max_value=7 * 24 * 3600, required=False,
        help_text="The leases' new length (default: each claim's own).",
    )  # fmt: skip
    client = ClientSerializer(
        required=False, help_text="The loop renewing, recorded with its slots."
    )


class RenewedAllSerializer(serializers.Serializer[Any]):
    renewed = RenewedSerializer(many=True)
    lost = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="Claims not held (another's, released, expired, unknown): stop their runs.",
    )  # fmt: skip


class PeekSerializer(serializers.Serializer[Any]):
    """django-crunch 0.1's answer to ``GET next/``: slugs only, nothing claimed."""

    project = serializers.CharField()
    dataset = serializers.CharField()


class ReleaseSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Why the claim is given back; cut to CRUNCH_NOTE_MAX_BYTES as a status's.",
    )  # fmt: skip
    reason = reason_field(
        default=FailReason.CANCELLED,
        help_text="Why: cancelled (the default), or time-limit with reason_detail 'wall-time' "
        "when the client's deadline stopped it. A release never spends an attempt.",
    )  # fmt: skip
    reason_detail = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=FAILURE_MAX
    )


class ExplanationSerializer(serializers.Serializer[Any]):
    dataset = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    command = serializers.CharField()


STATUS = Shared(StatusSerializer)
BATCH_STATUS = Shared(BatchStatusSerializer)
BATCH_REQUEST = Shared(BatchRequestSerializer)
RENEW_ALL = Shared(RenewAllSerializer)
NEXT_CLAIM = Shared(NextClaimSerializer)
CLAIM_REQUEST = Shared(ClaimRequestSerializer)
CLAIMED = Shared(ClaimedDatasetSerializer)
SHOWN_CLAIM = Shared(ClaimSerializer)
SHOWN_DATASET = Shared(DatasetSerializer)
SHOWN_PROJECT = Shared(ProjectSerializer)
"""The hot paths' serializers, made once (crunch.api.prepared): none reads its context."""
