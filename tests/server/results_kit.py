"""A small project with known results, shared by the results tests."""

from __future__ import annotations

from typing import Any

from crunch.choices import DatasetState
from crunch.models import Dataset, Project
from crunch.services.results import store
from tests.factories import make_dataset, make_project

RESULTS: dict[str, dict[str, Any]] = {
    "d0": {
        "words": 10, "score": 0.5, "site": "north", "where": {"lat": 1.5, "lon": -2.25},
        "day": "2024-05-01", "ok": True, "at": "2024-05-01T12:00:00Z",
    },
    "d1": {"words": 20, "score": 0.95, "site": "south", "ok": False},
    "d2": {"words": 30, "score": 1e-05, "site": 'north, "east"', "where": {"lat": -10, "lon": 100}},
    "d3": {},
}  # fmt: skip
"""Results by dataset name; d3 reported none."""


def survey(**project: Any) -> tuple[Project, dict[str, Dataset]]:
    """The project ``survey`` with datasets d0..d3 holding RESULTS (d0..d2 completed)."""
    made = make_project(name="Survey", **project)
    datasets = {}
    for name, values in RESULTS.items():
        state = DatasetState.COMPLETED if values else DatasetState.PENDING
        datasets[name] = make_dataset(made, name=name, state=state)
        if values:
            store(datasets[name], values)
    return made, datasets
