"""A shell script written against django-crunch 0.1's command line runs unchanged."""

from __future__ import annotations

import datetime
import json

import pytest

from crunch.models import Attribute, Dataset, Item, Project
from tests.clientkit import BIN, ROOT, Crunch

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = ROOT / "tests" / "e2e" / "cli_01.sh"


def test_a_script_written_for_0_1_runs_unchanged(crunch: Crunch) -> None:
    settings = crunch.work / "storage.json"
    settings.write_text(json.dumps({"STORAGES": {"default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(crunch.media)},
    }}}))  # fmt: skip
    folder = crunch.media / "crunch/survey-2021/site-1"
    folder.mkdir(parents=True)
    (folder / "counts.csv").write_text("quadrat,count\n1,4\n")
    env = {
        **crunch.maintainer_env, "STORAGE_SETTINGS": str(settings),
        "PATH": f"{BIN}:/usr/bin:/bin",
    }  # fmt: skip
    del env["CRUNCH_STORAGE_SETTINGS"]

    result = crunch.run(str(SCRIPT), command=["sh"], env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "survey-2021",
        "survey-2021:site-1",
        "survey-2021:site-1:transect-a",
        "survey-2021:site-1: observer = Ada Lovelace",
        "survey-2021:site-1: quadrats = 12",
        "survey-2021:site-1: depth = 3.5",
        "survey-2021:site-1: dry = True",
        "survey-2021:site-1: visited = 2021-05-01",
        "survey-2021:site-1: started = 2021-05-01 09:30:00+00:00",
        "survey-2021:site-1: map = https://example.org/site-1",
        "survey-2021:site-1:transect-a: raw = 1.0\xa0MB",  # Django's filesizeformat
        "survey-2021:site-1:transect-a: start = -37.8136, 144.9631",
        "survey-2021: funder = The Trust",
        "      18 B  counts.csv",
        "1 file(s), 18 B in 'crunch/survey-2021/site-1'.",
    ]
    project = Project.objects.get(slug="survey-2021")
    assert (project.name, project.description) == ("Survey 2021", "Sites visited in 2021")
    dataset = Dataset.objects.get(slug="survey-2021:site-1")
    assert (dataset.name, dataset.description) == ("Site 1", "The first site")
    assert Item.objects.get(slug="survey-2021:site-1:transect-a").dataset == dataset
    values = {a.key: a.value for a in Attribute.objects.filter(dataset=dataset)}
    assert values["quadrats"] == 12 and values["dry"] is True and values["depth"] == 3.5
    assert values["visited"] == datetime.date(2021, 5, 1)
