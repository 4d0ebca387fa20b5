"""Projects hold datasets, datasets hold items; any of them carries typed attributes.

A dataset keeps its lifecycle state on its own row (``state``, ``stage``, the current
claim) so that claiming, counting and listing never scan the status history.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import django
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from crunch import tokens
from crunch.choices import AttributeKind, DatasetState, Role, Stage, State, WorkflowKind
from crunch.conf import crunch_settings
from crunch.markup import details_length


def unique_slug(model: type[models.Model], base: str, *, prefix: str = "") -> str:
    """Return ``prefix + slugify(base)``, numbered until no row of ``model`` has it."""
    stem = prefix + (slugify(base) or "unnamed")
    slug, n = stem, 1
    while model._default_manager.filter(slug=slug).exists():
        n += 1
        slug = f"{stem}-{n}"
    return slug


def check_constraint(*, name: str, condition: Q) -> models.CheckConstraint:
    """Build a CheckConstraint on Django 4.2 (``check=``) and 5.1+ (``condition=``)."""
    if django.VERSION >= (5, 1):
        return models.CheckConstraint(name=name, condition=condition)
    # django-stubs describes Django 5.1+, which renamed ``check`` to ``condition``.
    return models.CheckConstraint(name=name, check=condition)  # type: ignore[call-arg]  # pragma: no cover


class Node(models.Model):
    """What projects, datasets and items share: a name, a slug and descriptions."""

    name = models.CharField(max_length=1023)
    slug = models.SlugField(max_length=1023, unique=True, allow_unicode=False)
    description = models.CharField(max_length=1023, blank=True, default="")
    details = models.TextField(
        blank=True, default="", help_text="Markdown.", validators=[details_length]
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


def default_max_attempts() -> int:
    return crunch_settings.DEFAULT_MAX_ATTEMPTS


def default_retry_delay() -> int:
    return crunch_settings.DEFAULT_RETRY_DELAY


class Project(Node):
    workflow = models.TextField(
        blank=True, default="", help_text="The bash script or Snakefile run for each dataset."
    )
    workflow_kind = models.CharField(
        max_length=16, choices=WorkflowKind.choices, default=WorkflowKind.SCRIPT
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
    """One edit of a project's workflow: who, when, and the text it replaced.

    The workflow is code every compute node runs, so each change is kept.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="workflow_changes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the new workflow text.")
    previous_sha256 = models.CharField(max_length=64, blank=True, default="")
    previous = models.TextField(blank=True, default="", help_text="The text it replaced.")

    class Meta:
        ordering = ["-created", "-id"]


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


class DatasetQuerySet(models.QuerySet["Dataset"]):
    def pending(self) -> DatasetQuerySet:
        return self.filter(state=DatasetState.PENDING)

    def ready(self, now: datetime.datetime | None = None) -> DatasetQuerySet:
        """Pending datasets whose retry delay, if any, has passed: what may be claimed."""
        return self.pending().filter(
            Q(not_before__isnull=True) | Q(not_before__lte=now or timezone.now())
        )

    def running(self) -> DatasetQuerySet:
        return self.filter(state=DatasetState.RUNNING)

    def completed(self) -> DatasetQuerySet:
        return self.filter(state=DatasetState.COMPLETED)

    def failed(self) -> DatasetQuerySet:
        return self.filter(state=DatasetState.FAILED)

    def expired(self, now: datetime.datetime | None = None) -> DatasetQuerySet:
        """Return running datasets whose claim was not renewed in time."""
        return self.running().filter(lease_expires__lt=now or timezone.now()).order_by()


class Dataset(Node):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    base_file_path = models.CharField(
        max_length=4095,
        blank=True,
        default="",
        help_text=(
            "Folder in storage holding the dataset's files (default crunch/<project>/<dataset>)."
        ),
    )
    priority = models.IntegerField(default=0, help_text="Higher is claimed first.")

    state = models.CharField(
        max_length=16, choices=DatasetState.choices, default=DatasetState.PENDING
    )
    stage = models.PositiveSmallIntegerField(choices=Stage.choices, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    note = models.TextField(blank=True, default="", help_text="The last failure's note.")
    finished = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="A failed run is not retried before this time."
    )

    claim_id = models.UUIDField(null=True, blank=True, unique=True)
    claim_holder = models.CharField(max_length=255, blank=True, default="")
    claim_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    lease_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="The lease length the claiming client asked for."
    )
    claim_key = models.CharField(
        max_length=64, null=True, blank=True,
        help_text="Chosen by the client so a retried claim request returns the same claim; "
        "unique per user (crunch_claim_key).",
    )  # fmt: skip

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            # A key names a request of one user: another user's key is no retry of it.
            models.UniqueConstraint(fields=["claim_user", "claim_key"], name="crunch_claim_key")
        ]
        indexes = [
            # The claim queue: one index probe per claim whatever the table size. Not
            # partial indexes: SQLite skips those when the state is a bound parameter.
            models.Index(fields=["state", "-priority", "id"], name="crunch_queue"),
            models.Index(
                fields=["project", "state", "-priority", "id"], name="crunch_project_queue"
            ),
            models.Index(fields=["state", "lease_expires"], name="crunch_state_lease"),
            models.Index(fields=["project", "state"], name="crunch_project_state"),
            models.Index(fields=["project", "finished"], name="crunch_project_finished"),
            # The pages: the datasets table sorted by name, and the recent-throughput
            # count of ProjectStats answered from the index alone.
            models.Index(fields=["project", "name"], name="crunch_project_name"),
            models.Index(fields=["project", "state", "finished"], name="crunch_project_state_done"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = unique_slug(Dataset, self.name, prefix=f"{self.project.slug}:")
        if not self.base_file_path:
            self.base_file_path = default_base_file_path(self.slug)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("crunch:dataset-detail", kwargs={"slug": self.slug})

    @property
    def short_slug(self) -> str:
        """The dataset's part of its slug, without the project."""
        return self.slug.split(":", 1)[-1]

    @property
    def is_claimed(self) -> bool:
        return self.state == DatasetState.RUNNING and self.claim_id is not None


def default_base_file_path(dataset_slug: str) -> str:
    project, _, dataset = dataset_slug.partition(":")
    return f"crunch/{project}/{dataset}"


class Item(Node):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )

    class Meta:
        ordering = ["id"]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            owner = self.parent.slug if self.parent else self.dataset.slug
            self.slug = unique_slug(Item, self.name, prefix=f"{owner}:")
        super().save(*args, **kwargs)


ONE_OWNER = (
    Q(project__isnull=False, dataset__isnull=True, item__isnull=True)
    | Q(project__isnull=True, dataset__isnull=False, item__isnull=True)
    | Q(project__isnull=True, dataset__isnull=True, item__isnull=False)
)


url_value = URLValidator()
"""A URL attribute's value (http, https, ftp, ftps): the pages render it as a link, so the
API and the admin (through ``Attribute.clean``) both refuse ``javascript:`` and the like."""


class Attribute(models.Model):
    """A typed key/value on exactly one project, dataset or item."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="attributes"
    )
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="attributes"
    )
    item = models.ForeignKey(
        Item, null=True, blank=True, on_delete=models.CASCADE, related_name="attributes"
    )
    kind = models.CharField(max_length=16, choices=AttributeKind.choices)
    key = models.CharField(max_length=255)
    text = models.TextField(blank=True, default="", help_text="Text and URL values.")
    integer = models.BigIntegerField(null=True, blank=True, help_text="Integers and file sizes.")
    number = models.FloatField(null=True, blank=True, help_text="Floats and latitude.")
    longitude = models.FloatField(null=True, blank=True)
    boolean = models.BooleanField(null=True, blank=True)
    date = models.DateField(null=True, blank=True)
    datetime = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key", "id"]
        constraints = [check_constraint(name="crunch_attribute_one_owner", condition=ONE_OWNER)]

    def __str__(self) -> str:
        return f"{self.key}: {self.display}"

    def clean(self) -> None:
        if self.kind == AttributeKind.URL:
            try:
                url_value(self.text)
            except ValidationError as exc:
                raise ValidationError({"text": exc.messages}) from None

    @property
    def value(self) -> Any:
        kind = AttributeKind(self.kind)
        if kind in (AttributeKind.TEXT, AttributeKind.URL):
            return self.text
        if kind in (AttributeKind.INTEGER, AttributeKind.FILESIZE):
            return self.integer
        if kind == AttributeKind.FLOAT:
            return self.number
        if kind == AttributeKind.BOOLEAN:
            return self.boolean
        if kind == AttributeKind.DATE:
            return self.date
        if kind == AttributeKind.DATETIME:
            return self.datetime
        return (self.number, self.longitude)

    @property
    def display(self) -> str:
        """The value as people read it: sizes in KB/MB/GB, coordinates as lat, long."""
        if self.kind == AttributeKind.FILESIZE and self.integer is not None:
            return str(filesizeformat(self.integer))
        if self.kind == AttributeKind.LATLONG:
            return f"{self.number}, {self.longitude}"
        return str(self.value)


class Status(models.Model):
    """One report from a client: a stage's Start, Success or Fail. Never changed afterwards."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="statuses")
    stage = models.PositiveSmallIntegerField(choices=Stage.choices)
    state = models.PositiveSmallIntegerField(choices=State.choices)
    note = models.TextField(blank=True, default="")
    claim_id = models.UUIDField(null=True, blank=True)
    key = models.CharField(
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
