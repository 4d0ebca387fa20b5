"""The crunch client as classes another Django project imports.

``Worker`` claims datasets and runs its ``stages`` (subclasses of ``Stage``) on them, with
a ``ClientConfig`` built in code or from a command's options; ``Claim``, ``DatasetInfo``
and ``ProjectInfo`` are what the server sends. ``results(project, where=...)`` yields a
project's results as typed ``ResultRow``s over HTTP. Names load on first use (PEP 562), so
``crunch --help`` and Django's app loading import nothing they do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crunch.lazy import exports

if TYPE_CHECKING:
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
    from crunchclient.server.results import LatLon, ResultRow
    from crunchclient.server.wire import Claim, DatasetInfo, ProjectInfo
    from crunchclient.settings.config import ClientConfig
    from crunchclient.terminal.results import results
    from crunchclient.worker.context import RunContext
    from crunchclient.worker.outcomes import LoopSummary, Outcome
    from crunchclient.worker.stages.base import Stage
    from crunchclient.worker.stages.setup import SetupStage
    from crunchclient.worker.stages.upload import UploadStage
    from crunchclient.worker.stages.workflow import WorkflowStage
    from crunchclient.worker.worker import Worker

EXPORTS = {
    "Worker": "crunchclient.worker.worker",
    "ClientConfig": "crunchclient.settings.config",
    "Outcome": "crunchclient.worker.outcomes",
    "LoopSummary": "crunchclient.worker.outcomes",
    "Stage": "crunchclient.worker.stages.base",
    "RunContext": "crunchclient.worker.context",
    "SetupStage": "crunchclient.worker.stages.setup",
    "WorkflowStage": "crunchclient.worker.stages.workflow",
    "UploadStage": "crunchclient.worker.stages.upload",
    "Claim": "crunchclient.server.wire",
    "DatasetInfo": "crunchclient.server.wire",
    "ProjectInfo": "crunchclient.server.wire",
    "results": "crunchclient.terminal.results",
    "ResultRow": "crunchclient.server.results",
    "LatLon": "crunchclient.server.results",
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
    "ClientError", "ConfigurationError", "DatasetInfo", "Interrupted", "LatLon", "LoopSummary",
    "NotFound", "Outcome", "ProjectInfo", "ResultRow", "RunContext", "ServerError", "SetupStage",
    "Stage", "StageFailed", "TransferError", "UnsafePathError", "UploadStage", "Worker",
    "WorkflowStage", "results",
]  # fmt: skip


__getattr__, __dir__ = exports(__name__, EXPORTS)
