"""Projects, the roles granted on them, their workflow's history, and API tokens."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from crunch import tokens
from crunch.choices import Role, WorkflowKind
from crunch.conf import crunch_settings
from crunch.models.base import Node, check_constraint, unique_slug


def default_max_attempts() -> int:
    return crunch_settings.DEFAULT_MAX_ATTEMPTS


def default_retry_delay() -> int:
    return crunch_settings.DEFAULT_RETRY_DELAY


CONTAINER_MAX = 500  # characters of a project's container image name


def container_image(value: str) -> None:
    """Refuse a container image a runtime could read as an option or as several arguments.

    The name becomes one argument of ``apptainer``, ``podman``, ``docker`` or ``ch-run`` on
    every compute node, so a leading '-', whitespace and control characters are refused.
    """
    shown = value if len(value) <= 80 else value[:77] + "..."
    if value.startswith("-"):
        raise ValidationError(
            f"The container {shown!r} starts with '-', which a container runtime would read "
            "as an option: give an image name, a docker:// reference or a path.",
            code="option",
        )
    for char in value:
        if char.isspace() or unicodedata.category(char).startswith("C"):
            raise ValidationError(
                f"The container {shown!r} holds {char!r}: give an image name or path without "
                "spaces or control characters.",
                code="character",
            )


def retry_policy_value(value: Any) -> None:
    """Refuse a retry policy crunch cannot apply (crunch.services.retry_policy says why)."""
    from crunch.services.retry_policy import check_policy  # the services import the models

    check_policy(value)


class Project(Node):
    workflow = models.TextField(
        blank=True, default="", help_text="The bash script or Snakefile run for each dataset."
    )
    workflow_kind = models.CharField(
        max_length=16, choices=WorkflowKind.choices, default=WorkflowKind.SCRIPT
    )
    container = models.CharField(
        max_length=CONTAINER_MAX,
        blank=True,
        default="",
        validators=[container_image],
        help_text="The image the workflow runs in, e.g. docker://rocker/r-ver:4.4, a path to "
        "a .sif, or a Charliecloud image directory or ch-image name. Empty: no container.",
    )
    max_attempts = models.PositiveIntegerField(
        default=default_max_attempts,
        help_text="Attempts a dataset gets before a failure leaves it failed.",
    )
    is_public = models.BooleanField(default=False, help_text="Anonymous visitors may see it.")
    retry_delay = models.PositiveIntegerField(
        default=default_retry_delay,
        help_text="Seconds before a failed dataset is handed out again; doubles per attempt.",
    )
    retry_policy = models.JSONField(
        default=dict, blank=True, validators=[retry_policy_value],
        help_text='Per failure reason, how a failure is retried, over the defaults: e.g. '
        '{"out-of-memory": {"retry": true, "spend": true, "delay": 600}, "exit-code": '
        '{"retry": false}}. retry: pending again (else failed until retried by hand); spend: '
        'the attempt counts; delay: seconds, or null for the retry delay doubled per attempt. '
        "Reasons: exit-code, signal, out-of-memory, time-limit, lost-lease, input-missing, "
        "tool-missing, transfer, cancelled, results, unknown.",
    )  # fmt: skip
    allow_empty = models.BooleanField(
        default=False, help_text="Datasets may start with no files in storage."
    )
    paused = models.BooleanField(
        default=False,
        help_text="Hands out no dataset: running ones finish, pending ones wait for resume.",
    )

    class Meta:
        ordering = ["name"]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = unique_slug(Project, self.name)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("crunch:project-detail", kwargs={"slug": self.slug})

    @property
    def workflow_sha256(self) -> str:
        return sha256_of(self.workflow)


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class WorkflowChange(models.Model):
    """One edit of a project's workflow or of the container it runs in: who, when, and the
    text and image it replaced.

    The workflow is code every compute node runs, in that image, so each change is kept.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="workflow_changes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the new workflow text.")
    previous_sha256 = models.CharField(max_length=64, blank=True, default="")
    previous = models.TextField(blank=True, default="", help_text="The text it replaced.")
    container = models.CharField(
        max_length=CONTAINER_MAX, blank=True, default="", help_text="The container after it."
    )
    previous_container = models.CharField(
        max_length=CONTAINER_MAX, blank=True, default="", help_text="The container before it."
    )

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.project} workflow {self.sha256[:12]}"


class ProjectRole(models.Model):
    """A role on one project (or on every project) for a user or a group."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="roles",
        help_text="Empty: every project, present and future.",
    )  # fmt: skip
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="crunch_roles",
    )  # fmt: skip
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="crunch_roles"
    )
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        constraints = [
            check_constraint(
                name="crunch_role_one_holder",
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
            )
        ]
        indexes = [models.Index(fields=["user", "project"], name="crunch_role_user")]

    def __str__(self) -> str:
        holder = self.user or self.group
        return f"{holder} is {self.role} of {self.project or 'every project'}"


def new_token_key() -> str:
    """A new key (kept here for migration 0004, which names it)."""
    return tokens.new_key()


class AccessToken(models.Model):
    """An API token of a user: named, listed and revoked in the admin, optionally expiring.

    Only the SHA-256 of its key and the key's first characters are stored (crunch/tokens.py);
    the key itself is ``key`` on the instance that created it, to be shown once.
    """

    digest = tokens.KeyDerivedField(max_length=64, unique=True, editable=False)
    prefix = tokens.KeyDerivedField(max_length=8, blank=True, default="", editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="crunch_tokens"
    )
    name = models.CharField(max_length=255, blank=True, default="")
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")

    key: str | None = None
    """The clear key: set on the instance that created it; never stored, never loaded."""

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name or 'token'} of {self.user}"

    def set_key(self, key: str) -> None:
        self.key, self.digest, self.prefix = key, tokens.digest(key), tokens.prefix(key)

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"
