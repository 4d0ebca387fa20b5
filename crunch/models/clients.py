"""The loops that hold claims, as their batch renewals describe them: how many slots each runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Client(models.Model):
    """One ``crunch loop`` of a user, known by its holder string, and the slots it runs.

    Written by the loop's batch renewals (and claims that describe their client); its
    busy slots are the running datasets it holds, counted when shown, never stored.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    holder = models.CharField(max_length=255, help_text="The holder its claims carry.")
    slots = models.PositiveSmallIntegerField(default=1, help_text="Datasets it runs at once.")
    hostname = models.CharField(max_length=255, blank=True, default="")
    slurm_job_id = models.CharField(max_length=64, blank=True, default="")
    slurm_array_task_id = models.CharField(max_length=64, blank=True, default="")
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["holder", "id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "holder"], name="crunch_client_holder")
        ]
        indexes = [models.Index(fields=["last_seen"], name="crunch_client_seen")]

    def __str__(self) -> str:
        return f"{self.holder} ({self.slots} slots)"
