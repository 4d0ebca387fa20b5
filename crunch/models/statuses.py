"""The status history: one row per report of a client, never changed afterwards."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from crunch.choices import FailReason, Stage, State
from crunch.models.datasets import Dataset

IMAGE_DIGEST = r"^sha256:[0-9a-f]{64}\Z"
"""A container image's digest as the client reports it: ``sha256:`` and 64 hex digits."""
image_digest_value = RegexValidator(
    IMAGE_DIGEST, "Give the image digest as 'sha256:' and 64 lowercase hexadecimal digits."
)


class Status(models.Model):
    """One report from a client: a stage's Start, Success or Fail. Never changed afterwards."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="statuses")
    stage = models.PositiveSmallIntegerField(choices=Stage.choices)
    state = models.PositiveSmallIntegerField(choices=State.choices)
    note = models.TextField(blank=True, default="")
    reason = models.CharField(
        max_length=16, choices=FailReason.choices, blank=True, default="",
        help_text="Why a Fail failed (unknown when its client named nothing); empty otherwise.",
    )  # fmt: skip
    reason_detail = models.CharField(
        max_length=200, blank=True, default="",
        help_text="The reason's particulars: the exit code, the signal, the tool, 'wall-time'...",
    )  # fmt: skip
    memory = models.BigIntegerField(
        null=True, blank=True, help_text="A Fail's bytes of memory the run had or announced."
    )
    seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="A Fail's time limit in seconds, when it had one."
    )
    claim_id = models.UUIDField(null=True, blank=True)
    # NULL, not "": the unique constraint on (dataset, user, key) must let unkeyed posts repeat.
    key = models.CharField(  # noqa: DJ001
        max_length=64,
        null=True,
        blank=True,
        help_text="Chosen by the client so a retried post is recorded once; "
        "unique per dataset and user (crunch_status_key).",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    workflow_sha256 = models.CharField(
        max_length=64, blank=True, default="", help_text="SHA-256 of the workflow the client ran."
    )
    image_digest = models.CharField(
        max_length=200,
        blank=True,
        default="",
        validators=[image_digest_value],
        help_text="Digest (sha256:...) of the container image the workflow ran in; empty: none.",
    )

    # Machine diagnostics, named as django-crunch 0.1 clients send them.
    agent_user = models.CharField(max_length=255, blank=True, default="")
    version = models.CharField(max_length=255, blank=True, default="")
    revision = models.CharField(max_length=255, blank=True, default="")
    system = models.CharField(max_length=255, blank=True, default="")
    system_release = models.CharField(max_length=255, blank=True, default="")
    system_version = models.CharField(max_length=1023, blank=True, default="")
    machine = models.CharField(max_length=255, blank=True, default="")
    hostname = models.CharField(max_length=255, blank=True, default="")
    ip_address = models.CharField(max_length=64, blank=True, default="")
    mac_address = models.CharField(max_length=64, blank=True, default="")
    slurm_job_id = models.CharField(max_length=64, blank=True, default="")
    slurm_array_task_id = models.CharField(max_length=64, blank=True, default="")
    slot = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Which of its loop's slots ran the dataset (crunch loop --slots), from 0.",
    )  # fmt: skip
    memory_total = models.BigIntegerField(null=True, blank=True)
    memory_free = models.BigIntegerField(null=True, blank=True)
    disk_total = models.BigIntegerField(null=True, blank=True)
    disk_free = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name_plural = "statuses"
        constraints = [
            # A retried post is found by the key its user chose for it on its dataset:
            # another user's key, or another dataset's, is no retry of it.
            models.UniqueConstraint(fields=["dataset", "user", "key"], name="crunch_status_key")
        ]
        indexes = [models.Index(fields=["dataset", "created"], name="crunch_status_dataset")]

    def __str__(self) -> str:
        return f"{self.dataset.slug}: {self.get_stage_display()} {self.get_state_display()}"
