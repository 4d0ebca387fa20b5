"""The retry policy: its defaults in action, a changed policy changing the next Fail's
effect, and its checks in the API and the admin."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from crunch.choices import FailReason
from crunch.models import Dataset, Project
from crunch.services.explain import explain
from crunch.services.retry_policy import DEFAULTS, Policy, Rule, after_fail, clean_policy
from tests.factories import make_dataset, make_project, make_user
from tests.server.admin_kit import errors, post_form, signed_in, staff

pytestmark = pytest.mark.django_db
CHOICES = ", ".join(FailReason.values)


def test_every_reason_has_a_default_rule():
    assert set(DEFAULTS) == set(FailReason.values)
    rules = Policy().rules()
    assert rules["input-missing"] == {"retry": False, "spend": True, "delay": None, "default": True}
    assert rules["cancelled"] == {"retry": True, "spend": False, "delay": 0, "default": True}
    assert rules["out-of-memory"] == {"retry": True, "spend": True, "delay": None, "default": True}


def test_an_override_changes_only_the_fields_it_gives():
    policy = Policy.of({"out-of-memory": {"delay": 600}})
    assert policy.rule("out-of-memory") == Rule(retry=True, spend=True, delay=600)
    assert policy.rules()["out-of-memory"]["default"] is False
    assert policy.rule("signal") == DEFAULTS["signal"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "A retry policy is an object {reason: {retry, spend, delay}}, not list."),
        ({"oom": {}}, f"Unknown failure reason 'oom' in the retry policy; use one of {CHOICES}."),
        ({"signal": True}, "The retry policy's rule for 'signal' is an object with retry, spend "
         "or delay, not bool."),
        ({"signal": {"tries": 3}}, "Unknown field 'tries' in the retry policy's rule for "
         "'signal'; use retry, spend or delay."),
        ({"signal": {"retry": "yes"}}, "'retry' of 'signal' is true or false, not 'yes'."),
        ({"signal": {"delay": -1}}, "'delay' of 'signal' is a whole number of seconds from 0 "
         "to 2592000, or null for the project's backoff; not '-1'."),
        ({"signal": {"delay": True}}, "'delay' of 'signal' is a whole number of seconds from 0 "
         "to 2592000, or null for the project's backoff; not 'True'."),
    ],
)  # fmt: skip
def test_a_policy_crunch_cannot_apply_is_refused_in_one_line(value, message):
    with pytest.raises(ValidationError) as caught:
        clean_policy(value)
    assert caught.value.messages == [message]


def test_a_wall_time_limit_never_spends_an_attempt():
    now = timezone.now()
    common = {"policy": Policy(), "attempts": 2, "max_attempts": 2, "retry_delay": 0, "now": now}
    assert after_fail(reason="time-limit", detail="", **common).state == "failed"
    freed = after_fail(reason="time-limit", detail="wall-time", **common)
    assert (freed.state, freed.attempts) == ("pending", 1)


@pytest.fixture
def project() -> Project:
    return make_project(name="Scans", max_attempts=3)


@pytest.fixture
def worker(project: Project) -> APIClient:
    _, token = make_user("node", role="worker", projects=[project])
    return api_of(token)


@pytest.fixture
def maintainer(project: Project) -> APIClient:
    _, token = make_user("keeper", role="maintainer", projects=[project])
    return api_of(token)


def api_of(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def run_and_fail(api: APIClient, reason: str, **extra: Any) -> dict[str, Any]:
    claimed = api.post("/api/projects/scans/next/", {"holder": "n"}, format="json").json()
    body = {
        "dataset": claimed["dataset"]["id"], "claim": claimed["claim"]["id"], "stage": 2,
        "state": 3, "note": f"{reason}!", "reason": reason, **extra,
    }  # fmt: skip
    answer = api.post("/api/statuses/", body, format="json")
    assert answer.status_code == 201, answer.content
    return dict(answer.json())


def state_of(dataset: Dataset) -> tuple[str, int]:
    dataset.refresh_from_db()
    return dataset.state, dataset.attempts


def test_the_default_policy_in_action(project, worker):
    """input-missing is not retried; out-of-memory is retried and spends; cancelled spends none."""
    dataset = make_dataset(project, name="d")
    answer = run_and_fail(worker, "input-missing")
    assert answer["dataset_state"] == "failed"
    assert state_of(dataset) == ("failed", 1)  # attempts remained: the policy held it
    held = explain(dataset)
    assert held.reason == (
        "Failed 1 of 3 attempt(s) with input-missing, which the project's retry policy does "
        'not retry: fix its cause first. The last note: "input-missing!".'
    )
    assert held.command == "crunch retry scans:d"

    Dataset.objects.filter(pk=dataset.pk).update(state="pending", attempts=0)
    run_and_fail(worker, "out-of-memory")
    assert state_of(dataset) == ("pending", 1)
    run_and_fail(worker, "cancelled")
    assert state_of(dataset) == ("pending", 1)  # the cancelled run's attempt given back
    run_and_fail(worker, "exit-code", reason_detail="3")
    run_and_fail(worker, "signal", reason_detail="SIGKILL")
    assert state_of(dataset) == ("failed", 3)  # out of attempts


def test_a_changed_policy_changes_the_next_fail(project, worker, maintainer):
    dataset = make_dataset(project, name="d")
    policy = {"input-missing": {"retry": True, "spend": False}, "exit-code": {"delay": 600}}
    answer = maintainer.patch("/api/projects/scans/", {"retry_policy": policy}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["retry_policy"] == policy
    assert answer.json()["retry_rules"]["input-missing"] == {
        "retry": True, "spend": False, "delay": None, "default": False,
    }  # fmt: skip
    run_and_fail(worker, "input-missing")
    assert state_of(dataset) == ("pending", 0)
    before = timezone.now()
    answer = run_and_fail(worker, "exit-code")
    retry_at = datetime.datetime.fromisoformat(answer["dataset_retry_at"].replace("Z", "+00:00"))
    assert 599 <= (retry_at - before).total_seconds() <= 601
    assert state_of(dataset) == ("pending", 1)


def test_the_api_refuses_a_bad_policy_in_one_line(maintainer):
    answer = maintainer.patch(
        "/api/projects/scans/", {"retry_policy": {"oom": {"retry": False}}}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        "Invalid input. retry_policy: Unknown failure reason 'oom' in the retry policy; use one "
        f"of {CHOICES}."
    )
    assert Project.objects.get().retry_policy == {}


def test_the_admin_edits_the_policy_and_refuses_a_bad_one(project):
    from crunch.access import grant
    from crunch.choices import Role

    user = staff("keeper")
    grant(Role.MAINTAINER, project=project, user=user)
    client = signed_in(user)
    url = f"/admin/crunch/project/{project.pk}/change/"
    page = client.get(url)
    assert "retry_policy" in page.content.decode()
    bad = post_form(client, url, {"retry_policy": '{"exit-code": {"retry": "no"}}'})
    assert "&#x27;retry&#x27; of &#x27;exit-code&#x27; is true or false" in bad.content.decode()
    good = post_form(client, url, {"retry_policy": '{"exit-code": {"retry": false}}'})
    assert good.status_code == 302, errors(good)
    project.refresh_from_db()
    assert project.retry_policy == {"exit-code": {"retry": False}}
