"""The crunch client as classes another Django project imports.

``Worker`` claims datasets and runs its ``stages`` (subclasses of ``Stage``) on them, with
a ``ClientConfig`` built in code or from a command's options; ``Claim``, ``DatasetInfo``
and ``ProjectInfo`` are what the server sends. Names load on first use (PEP 562), so
``crunch --help`` and Django's app loading import nothing they do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crunch.lazy import exports

if TYPE_CHECKING:
    from crunchclient.config import ClientConfig
    from crunchclient.exceptions import (
        AuthenticationFailed,
        ClaimConflict,
        ClaimLost,
        ClientError,
        ConfigurationError,
        Interrupted,
        NotFound,
        ServerError,
        StageFailed,
        TransferError,
        UnsafePathError,
    )
    from crunchclient.outcomes import LoopSummary, Outcome
    from crunchclient.stages.base import RunContext, Stage
    from crunchclient.stages.setup import SetupStage
    from crunchclient.stages.upload import UploadStage
    from crunchclient.stages.workflow import WorkflowStage
    from crunchclient.wire import Claim, DatasetInfo, ProjectInfo
    from crunchclient.worker import Worker

EXPORTS = {
    "Worker": "crunchclient.worker",
    "ClientConfig": "crunchclient.config",
    "Outcome": "crunchclient.outcomes",
    "LoopSummary": "crunchclient.outcomes",
    "Stage": "crunchclient.stages.base",
    "RunContext": "crunchclient.stages.base",
    "SetupStage": "crunchclient.stages.setup",
    "WorkflowStage": "crunchclient.stages.workflow",
    "UploadStage": "crunchclient.stages.upload",
    "Claim": "crunchclient.wire",
    "DatasetInfo": "crunchclient.wire",
    "ProjectInfo": "crunchclient.wire",
    **dict.fromkeys(
        [
            "ClientError", "ConfigurationError", "ServerError", "AuthenticationFailed",
            "TransferError", "UnsafePathError", "NotFound", "ClaimConflict", "ClaimLost",
            "StageFailed", "Interrupted",
        ],
        "crunchclient.exceptions",
    ),
}  # fmt: skip
"""{public name: the module defining it}."""

__all__ = [
    "AuthenticationFailed", "Claim", "ClaimConflict", "ClaimLost", "ClientConfig",
    "ClientError", "ConfigurationError", "DatasetInfo", "Interrupted", "LoopSummary",
    "NotFound", "Outcome", "ProjectInfo", "RunContext", "ServerError", "SetupStage", "Stage",
    "StageFailed", "TransferError", "UnsafePathError", "UploadStage", "Worker", "WorkflowStage",
]  # fmt: skip


__getattr__, __dir__ = exports(__name__, EXPORTS)
