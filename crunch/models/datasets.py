"""Datasets hold items; any project, dataset or item carries typed attributes.

A dataset keeps its lifecycle state on its own row (``state``, ``stage``, the current
claim) so that claiming, counting and listing never scan the status history.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone

from crunch.choices import AttributeKind, DatasetState, FailReason, Stage
from crunch.models.base import Node, check_constraint, unique_slug
from crunch.models.projects import Project


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
    last_reason = models.CharField(
        max_length=16, choices=FailReason.choices, blank=True, default="",
        help_text="The last failure's reason (or release's); empty once completed.",
    )  # fmt: skip
    last_reason_detail = models.CharField(max_length=200, blank=True, default="")
    needs_memory = models.BigIntegerField(
        null=True, blank=True,
        help_text="Bytes of memory a claim must announce to get it: more than its last "
        "out-of-memory run had. Empty: any claim.",
    )  # fmt: skip
    needs_seconds = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Seconds a claim must announce to get it: more than its last time-limited "
        "run was given. Empty: any claim.",
    )  # fmt: skip
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
    # NULL, not "": the unique constraint on (user, key) must let unkeyed claims repeat.
    claim_key = models.CharField(  # noqa: DJ001
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


VALUE_COLUMN = {
    AttributeKind.TEXT: "text", AttributeKind.URL: "text",
    AttributeKind.INTEGER: "integer", AttributeKind.FILESIZE: "integer",
    AttributeKind.FLOAT: "number", AttributeKind.BOOLEAN: "boolean",
    AttributeKind.DATE: "date", AttributeKind.DATETIME: "datetime",
}  # fmt: skip
"""{kind: the column holding its value}; a latitude/longitude holds two."""


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
        if kind == AttributeKind.LATLONG:
            return (self.number, self.longitude)
        return getattr(self, VALUE_COLUMN[kind])

    @property
    def display(self) -> str:
        """The value as people read it: sizes in KB/MB/GB, coordinates as lat, long."""
        if self.kind == AttributeKind.FILESIZE and self.integer is not None:
            return str(filesizeformat(self.integer))
        if self.kind == AttributeKind.LATLONG:
            return f"{self.number}, {self.longitude}"
        return str(self.value)
