from __future__ import annotations

from django.db import models


class Stage(models.IntegerChoices):
    """The three stages a client runs for a dataset (numbers as in django-crunch 0.1)."""

    SETUP = 1, "Setup"
    WORKFLOW = 2, "Workflow"
    UPLOAD = 3, "Upload"


class State(models.IntegerChoices):
    """The state a status reports for its stage (numbers as in django-crunch 0.1)."""

    START = 1, "Start"
    SUCCESS = 2, "Success"
    FAIL = 3, "Fail"


class DatasetState(models.TextChoices):
    """Where a dataset is in its lifecycle; kept on the row so nothing scans history."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class FailReason(models.TextChoices):
    """Why a run failed: set by the client on a Fail (``unknown`` when it names none, as
    django-crunch 0.1 clients), by the server on a lost lease. The project's retry policy
    (crunch.services.retry_policy) says per reason whether and when it is retried."""

    EXIT_CODE = "exit-code", "Exit code"
    SIGNAL = "signal", "Signal"
    OUT_OF_MEMORY = "out-of-memory", "Out of memory"
    TIME_LIMIT = "time-limit", "Time limit"
    LOST_LEASE = "lost-lease", "Lost lease"
    INPUT_MISSING = "input-missing", "Input missing"
    TOOL_MISSING = "tool-missing", "Tool missing"
    TRANSFER = "transfer", "Transfer"
    CANCELLED = "cancelled", "Cancelled"
    RESULTS = "results", "Results"
    UNKNOWN = "unknown", "Unknown"


WALL_TIME = "wall-time"
"""The ``reason_detail`` of a ``time-limit`` that the loop's or the batch system's deadline
caused: the task ran out, not the dataset, so it spends no attempt and raises no need."""


class WorkflowKind(models.TextChoices):
    SCRIPT = "script", "Bash script"
    SNAKEMAKE = "snakemake", "Snakefile"
    EXECUTABLE = "executable", "Executable (its shebang picks the interpreter)"


class Role(models.TextChoices):
    """What a user or group may do on a project; each role includes the ones below it."""

    MAINTAINER = "maintainer", "Maintainer"
    WORKER = "worker", "Worker"
    VIEWER = "viewer", "Viewer"


class AttributeKind(models.TextChoices):
    TEXT = "char", "Text"
    INTEGER = "int", "Integer"
    FLOAT = "float", "Float"
    BOOLEAN = "bool", "Boolean"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    URL = "url", "URL"
    FILESIZE = "filesize", "File size"
    LATLONG = "latlong", "Latitude/longitude"


RESULT_KINDS = (
    AttributeKind.INTEGER, AttributeKind.FLOAT, AttributeKind.BOOLEAN, AttributeKind.TEXT,
    AttributeKind.DATE, AttributeKind.DATETIME, AttributeKind.LATLONG,
)  # fmt: skip
"""The attribute kinds a result may have (no URL or file size: those are text and int)."""
