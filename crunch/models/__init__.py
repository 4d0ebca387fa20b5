"""Projects hold datasets, datasets hold items; any of them carries typed attributes.

One module per concern; every model and helper is importable from ``crunch.models`` as
before (migrations name ``crunch.models.new_token_key`` and the defaults).
"""

from __future__ import annotations

from crunch.choices import RESULT_KINDS
from crunch.models.base import Node, check_constraint, unique_slug
from crunch.models.clients import Client
from crunch.models.datasets import (
    ONE_OWNER,
    Attribute,
    Dataset,
    DatasetQuerySet,
    Item,
    default_base_file_path,
    url_value,
)
from crunch.models.notifications import (
    Delivery,
    DeliveryState,
    Event,
    Notification,
    NotificationKind,
    Watch,
)
from crunch.models.projects import (
    CONTAINER_MAX,
    AccessToken,
    Project,
    ProjectRole,
    WorkflowChange,
    container_image,
    default_max_attempts,
    default_retry_delay,
    new_token_key,
    sha256_of,
)
from crunch.models.results import (
    LatLon,
    Result,
    ResultKey,
    ResultsVersion,
)
from crunch.models.statuses import Status, image_digest_value

__all__ = [
    "CONTAINER_MAX", "ONE_OWNER", "RESULT_KINDS", "AccessToken", "Attribute", "Client",
    "Dataset", "DatasetQuerySet", "Delivery", "DeliveryState", "Event", "Item", "LatLon",
    "Node", "Notification", "NotificationKind", "Project", "ProjectRole", "Result",
    "ResultKey", "ResultsVersion", "Status", "Watch", "WorkflowChange",
    "check_constraint", "container_image", "default_base_file_path", "default_max_attempts",
    "default_retry_delay", "image_digest_value", "new_token_key", "sha256_of", "unique_slug",
    "url_value",
]  # fmt: skip
