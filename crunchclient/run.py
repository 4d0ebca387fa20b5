"""Old import path of ``run_dataset``, ``run_next``, ``run_loop``: see crunchclient.worker."""

from __future__ import annotations

from crunchclient.config import ClientConfig
from crunchclient.outcomes import LoopSummary, Outcome
from crunchclient.worker import Worker, retry

__all__ = ["LoopSummary", "Outcome", "retry", "run_dataset", "run_loop", "run_next"]


def run_dataset(config: ClientConfig, slug: str) -> Outcome:
    return Worker(config).run_dataset(slug)


def run_next(config: ClientConfig, *, project: str | None = None) -> Outcome | None:
    return Worker(config).run_next(project=project)


def run_loop(
    config: ClientConfig, *, project: str | None = None, max_datasets: int | None = None,
    time_limit: float | None = None, wait: float | None = None,
) -> LoopSummary:  # fmt: skip
    return Worker(config).run_loop(
        project=project, max_datasets=max_datasets, time_limit=time_limit, wait=wait
    )
