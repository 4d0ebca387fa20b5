"""Issue 28's Must show 5: the notifications' events and their delivery, for real.

Runs are real claims and statuses through the services; webhooks go over HTTP to a
receiver on 127.0.0.1 (tests/server/notify_kit.py); e-mail through Django's locmem
backend. Time moves by passing a later ``now`` to the scan and the delivery, not by
sleeping.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import socket
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from crunch.models import Delivery, DeliveryState, Event, Notification, NotificationKind
from crunch.services.notifications import deliver, notify, scan, verify
from crunch.services.notifications.events import SETTLE
from tests.factories import make_dataset
from tests.server.notify_kit import Receiver, datasets, failing_project, receiver, run, webhook

__all__ = ["receiver"]  # the fixture
pytestmark = pytest.mark.django_db
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def local_receivers(settings: Any) -> None:
    settings.CRUNCH_NOTIFY_PRIVATE_ADDRESSES = True  # the receiver is on 127.0.0.1


def later(minutes: float = 0) -> datetime.datetime:
    """A scan's time that sees every run ended so far (SETTLE after it), and no later one:
    what ends after this call is after the cursor of a failed-for-good scan at it."""
    return timezone.now() + SETTLE + datetime.timedelta(minutes=minutes)


def test_a_webhook_is_signed_with_its_secret(receiver: Receiver) -> None:
    project = failing_project(name="Signed")
    hook = webhook(project, receiver.url, on_failed=False, on_spike=False)
    datasets(project, 1)
    run(project, fail=False)

    queued, sent = notify(later())

    assert (queued, sent.delivered) == (1, 1)
    (received,) = receiver.requests
    expected = "sha256=" + hmac.new(hook.secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["X-Crunch-Signature-256"], expected)
    assert verify(hook.secret, received.body, received.headers["X-Crunch-Signature-256"])
    assert not verify("another secret", received.body, received.headers["X-Crunch-Signature-256"])
    assert received.headers["X-Crunch-Event"] == "finished"
    assert received.headers["X-Crunch-Delivery"] == str(Delivery.objects.get().pk)
    assert received.headers["Content-Type"] == "application/json"
    payload = json.loads(received.body)
    assert payload["event"] == "finished"
    assert payload["project"]["slug"] == project.slug
    assert payload["datasets"] == {"total": 1, "completed": 1, "failed": 0}
    assert payload["text"] == "Project Signed finished: 1 of 1 datasets completed, 0 failed."


def test_a_receivers_500_is_retried_with_backoff_and_delivered_once(receiver: Receiver) -> None:
    project = failing_project()
    webhook(project, receiver.url)
    datasets(project, 1)
    run(project, fail=False)
    receiver.answers = [500]
    start = later()

    assert scan(start) == 1
    first = deliver(start)
    delivery = Delivery.objects.get()
    assert (first.retried, delivery.state, delivery.attempts) == (1, DeliveryState.QUEUED, 1)
    assert delivery.last_error == "HTTP 500: receiver is down"
    assert delivery.next_try == start + datetime.timedelta(seconds=30)

    assert deliver(start + datetime.timedelta(seconds=29)).delivered == 0  # not due yet
    assert scan(start + MINUTE) == 0  # the event is queued once
    assert deliver(start + datetime.timedelta(seconds=31)).delivered == 1
    assert deliver(start + 120 * MINUTE).delivered == 0

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("delivered", 2, "")
    assert len(receiver.requests) == 2
    first_try, second_try = receiver.requests
    assert first_try.body == second_try.body
    assert first_try.headers["X-Crunch-Delivery"] == second_try.headers["X-Crunch-Delivery"]


def test_a_delivery_is_given_up_after_its_tries(receiver: Receiver, settings: Any) -> None:
    settings.CRUNCH_NOTIFY_MAX_ATTEMPTS = 3
    project = failing_project()
    webhook(project, receiver.url)
    datasets(project, 1)
    run(project, fail=False)
    receiver.answers = [503] * 5
    now = later()
    scan(now)
    waits = []
    for _ in range(5):
        deliver(now)
        delivery = Delivery.objects.get()
        waits.append((delivery.next_try - now).total_seconds())
        now = delivery.next_try
    assert delivery.state == DeliveryState.GIVEN_UP
    assert len(receiver.requests) == 3
    assert waits[:2] == [30, 60]


def test_a_spike_fires_once_an_hour(receiver: Receiver) -> None:
    project = failing_project()
    webhook(project, receiver.url, on_finished=False, on_failed=False)
    datasets(project, 24)
    for index in range(21):  # 11 of 21 runs fail
        run(project, fail=index % 2 == 0, note=f"exit {index}")
    now = later()

    assert scan(now) == 1
    assert scan(now) == 0
    run(project, fail=True)
    assert scan(now + 10 * MINUTE) == 0  # within the hour
    assert scan(now + 61 * MINUTE) == 1  # an hour on, with a new failure
    assert scan(now + 62 * MINUTE) == 0

    deliver(now + 62 * MINUTE)
    assert [r.headers["X-Crunch-Event"] for r in receiver.requests] == ["spike", "spike"]
    payload = json.loads(receiver.requests[0].body)
    assert (payload["runs"], payload["failed"]) == (20, 10)
    assert payload["latest_failures"][0]["note"] == "exit 20"


def test_no_spike_below_half_or_without_a_full_window(receiver: Receiver) -> None:
    project = failing_project()
    webhook(project, receiver.url, on_finished=False, on_failed=False)
    datasets(project, 22)
    for index in range(19):
        run(project, fail=True, note=f"exit {index}")
    assert scan(later()) == 0  # 19 runs: no window of 20 yet
    run(project, fail=False)
    assert scan(later(2)) == 1  # 19 of the last 20 failed
    other = failing_project(name="Mostly fine")
    webhook(other, receiver.url, on_finished=False, on_failed=False)
    datasets(other, 20)
    for index in range(20):
        run(other, fail=index < 9)
    scan(later(3))
    assert not Delivery.objects.filter(notification__project=other).exists()  # 9 of 20


def test_a_finished_project_fires_once_each_time_it_runs_dry(receiver: Receiver) -> None:
    project = failing_project()
    webhook(project, receiver.url, on_failed=False, on_spike=False)
    datasets(project, 3)
    run(project, fail=False)
    run(project, fail=True)
    assert scan(later()) == 0  # one dataset is still pending

    run(project, fail=False)
    assert scan(later()) == 1
    assert scan(later(2)) == 0
    assert Delivery.objects.count() == 1

    make_dataset(project, name="late")  # registered after: the project runs again
    assert scan(later(3)) == 0
    run(project, fail=False)
    assert scan(later(4)) == 1
    sent = deliver(later(4))
    assert sent.delivered == 2
    assert [json.loads(r.body)["datasets"]["total"] for r in receiver.requests] == [3, 4]


def test_datasets_failed_for_good_fire_once(receiver: Receiver) -> None:
    project = failing_project(max_attempts=2)
    webhook(project, receiver.url, on_finished=False, on_spike=False)
    datasets(project, 3)
    run(project, fail=True, note="exit 3\nthe rest")  # d00: attempt 1 of 2, retried
    assert scan(later()) == 0
    run(project, fail=True, note="exit 3\nthe rest")  # d00 again: failed for good
    run(project, fail=False)  # d01

    assert scan(later()) == 1
    assert scan(later(2)) == 0
    deliver(later(2))
    (received,) = receiver.requests
    payload = json.loads(received.body)
    assert received.headers["X-Crunch-Event"] == "failed"
    assert payload["count"] == 1
    (entry,) = payload["datasets"]
    assert (entry["name"], entry["attempts"], entry["note"]) == ("d00", 2, "exit 3")
    assert entry["url"].endswith(f"/datasets/{project.slug}:d00/")


def test_a_notification_hears_nothing_of_what_ended_before_it(receiver: Receiver) -> None:
    project = failing_project()
    datasets(project, 2)
    run(project, fail=True)
    run(project, fail=False)
    webhook(project, receiver.url)
    assert scan(later()) == 0


def test_each_event_reaches_only_the_notifications_that_listen(receiver: Receiver) -> None:
    project = failing_project()
    finished_only = webhook(project, receiver.url, on_failed=False, on_spike=False)
    failed_only = webhook(project, receiver.url, on_finished=False, on_spike=False)
    webhook(project, receiver.url, active=False)
    datasets(project, 1)
    run(project, fail=True)
    assert scan(later()) == 2
    events = dict(Delivery.objects.values_list("notification", "event"))
    assert events == {finished_only.pk: Event.FINISHED, failed_only.pk: Event.FAILED}


def test_e_mail_goes_through_djangos_mail_settings(mailoutbox: list[Any]) -> None:
    project = failing_project(name="Mailed")
    Notification.objects.create(
        project=project, kind=NotificationKind.EMAIL, emails="a@example.org\nb@example.org",
        on_spike=False,
    )  # fmt: skip
    datasets(project, 2)
    run(project, fail=True, note="out of memory\ntrace")
    run(project, fail=False)

    queued, sent = notify(later())

    assert (queued, sent.delivered) == (2, 2)
    subjects = sorted(mail.subject for mail in mailoutbox)
    assert subjects == [
        "[crunch] Project Mailed finished: 1 of 2 datasets completed, 1 failed.",
        "[crunch] Project Mailed: 1 dataset(s) failed for good: d00.",
    ]
    assert all(mail.to == ["a@example.org", "b@example.org"] for mail in mailoutbox)
    failed = next(mail for mail in mailoutbox if "failed for good" in mail.subject)
    assert "- d00 (1 attempts): out of memory" in failed.body


def test_private_addresses_are_refused_unless_allowed(receiver: Receiver, settings: Any) -> None:
    settings.CRUNCH_NOTIFY_PRIVATE_ADDRESSES = False
    project = failing_project()
    webhook(project, receiver.url)
    datasets(project, 1)
    run(project, fail=False)
    notify(later())
    delivery = Delivery.objects.get()
    assert receiver.requests == []
    assert delivery.last_error.startswith("127.0.0.1 is 127.0.0.1, not a public address")


def test_a_name_that_turns_private_after_the_check_is_refused_before_sending(
    receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the webhook's name answers a public address to the check, then the
    receiver's 127.0.0.1 to the connection (what an attacker's DNS server does with a
    zero TTL). The connection's own peer is checked: nothing reaches the receiver."""
    settings.CRUNCH_NOTIFY_PRIVATE_ADDRESSES = False
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])  # the first answer public, every later one local

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            host = next(answers, "127.0.0.1")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    project = failing_project()
    webhook(project, receiver.url.replace("127.0.0.1", "rebind.example"))
    datasets(project, 1)
    run(project, fail=False)
    notify(later())
    delivery = Delivery.objects.get()
    assert receiver.requests == []
    assert delivery.last_error == (
        "rebind.example is 127.0.0.1, not a public address: set "
        "CRUNCH_NOTIFY_PRIVATE_ADDRESSES = True to send webhooks inside your network."
    )
    assert delivery.state == DeliveryState.QUEUED  # tried again later, as any failure


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_notifiers_never_send_a_delivery_twice(receiver: Receiver) -> None:
    """Two notifiers at once on PostgreSQL: each due delivery is claimed by one of them."""
    assert connection.vendor == "postgresql"
    projects = []
    for index in range(12):
        project = failing_project(name=f"P{index}")
        webhook(project, receiver.url)
        datasets(project, 1)
        run(project, fail=False)
        projects.append(project)
    now = later()
    counts: list[int] = []
    start = threading.Barrier(2)

    def notifier() -> None:
        start.wait()
        try:
            _queued, sent = notify(now)
            counts.append(sent.delivered)
        finally:
            connection.close()

    threads = [threading.Thread(target=notifier) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [r.headers["X-Crunch-Delivery"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 12 == sum(counts)
    assert Delivery.objects.filter(state=DeliveryState.DELIVERED).count() == 12


def test_an_idle_scan_costs_a_few_queries_per_project(
    receiver: Receiver, django_assert_max_num_queries: Any
) -> None:
    """Nothing ended since the last scan: a handful of index probes per project, whatever
    its size, and no read of the status history."""
    for index in range(5):
        project = failing_project(name=f"Idle {index}")
        webhook(project, receiver.url)
        datasets(project, 3)
        run(project, fail=True)
    scan(later())
    with django_assert_max_num_queries(1 + 5 * 8) as counted:
        assert scan(later()) == 0
    assert not any("crunch_status" in query["sql"] for query in counted.captured_queries)
