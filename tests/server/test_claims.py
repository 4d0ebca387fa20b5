"""Claims under concurrency, leases and the query count of a claim."""

from __future__ import annotations

import datetime
import threading
from collections import Counter

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crunch.choices import DatasetState
from crunch.models import Dataset, Project, Status
from crunch.services import claims, counted_claims, statuses
from tests.factories import bulk_datasets, make_dataset, make_project


def claim_until_empty(workers: int, project=None, count: int | None = None) -> list[int]:
    """Run ``workers`` threads, each on its own connection, claiming until none is left
    (``count`` at a time when given)."""
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work(n: int) -> None:
        try:
            start.wait()
            while True:
                if count is None:
                    claim = claims.claim_next(holder=f"worker-{n}", project=project)
                    got = [] if claim is None else [claim]
                else:
                    got = counted_claims.claim_many(
                        count=count, holder=f"worker-{n}", project=project
                    )
                if not got:
                    break
                with lock:
                    taken.extend(claim.dataset.pk for claim in got)
            # SQLite claims under its write lock, so "none left" is true when said. (SKIP
            # LOCKED may also say it while the last rows are being claimed.)
            if connection.vendor == "sqlite" and Dataset.objects.pending().exists():
                errors.append(AssertionError(f"worker-{n} was told nothing is pending"))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return taken


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scoped", [False, True], ids=["any-project", "one-project"])
@pytest.mark.parametrize("count", [None, 7, 64], ids=["one", "count-7", "count-64"])
def test_eight_workers_claim_500_datasets_each_exactly_once(scoped, count):
    project = make_project(name="Busy")
    bulk_datasets(project, 500)
    taken = claim_until_empty(8, project=project if scoped else None, count=count)
    assert len(taken) == 500
    assert [pk for pk, n in Counter(taken).items() if n > 1] == []
    assert Dataset.objects.pending().count() == 0
    assert Dataset.objects.running().count() == 500
    assert Dataset.objects.filter(attempts=1).count() == 500
    assert Dataset.objects.values("claim_id").distinct().count() == 500


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize("count", [None, 3])
def test_postgres_claims_skip_locked_rows(count):
    make_dataset()
    with CaptureQueriesContext(connection) as queries:
        if count is None:
            assert claims.claim_next(holder="a") is not None
        else:
            assert len(counted_claims.claim_many(count=count, holder="a")) == 1
    (taken,) = [q["sql"] for q in queries.captured_queries if "UPDATE" in q["sql"]]
    assert 'FOR UPDATE OF "crunch_dataset" SKIP LOCKED' in taken


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize("by", ["slug", "object"])
def test_a_locked_project_row_does_not_empty_its_queue(by):
    """SKIP LOCKED skips rows of every table it locks: a claim must lock datasets only, or a
    project row held by another transaction (an edit, another claim) hides every dataset."""
    project = make_project(name="Held")
    bulk_datasets(project, 3)
    held, release = threading.Event(), threading.Event()

    def hold_the_project_row() -> None:
        try:
            with transaction.atomic():
                Project.objects.select_for_update().get(pk=project.pk)
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_project_row)
    holder.start()
    try:
        assert held.wait(30)
        claim = claims.claim_next(holder="h", project=project.slug if by == "slug" else project)
        assert claim is not None and claim.dataset.project_id == project.pk
    finally:
        release.set()
        holder.join()


@pytest.mark.django_db
def test_a_claim_takes_its_row_in_one_statement():
    dataset = make_dataset()
    with CaptureQueriesContext(connection) as queries:
        claim = claims.claim_next(holder="a")
    assert claim is not None and claim.dataset.pk == dataset.pk
    writes = [q["sql"] for q in queries.captured_queries if 'crunch_dataset" SET' in q["sql"]]
    assert len(writes) == 1 and writes[0].startswith("UPDATE") and "RETURNING" in writes[0]
    assert claims.claim_next(holder="b") is None
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.claim_holder) == ("running", 1, "a")


@pytest.mark.django_db
def test_expired_lease_returns_to_pending_giving_the_attempt_back():
    """lost-lease's default rule: the client was lost, not the dataset's fault."""
    dataset = make_dataset(make_project(name="P", max_attempts=1))
    first = claims.claim_next(holder="lost@node1", lease_seconds=60)
    assert first is not None
    assert claims.reclaim_expired(timezone.now() + datetime.timedelta(seconds=61)) == 1
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.claim_id) == ("pending", 0, None)
    assert dataset.last_reason == "lost-lease"
    note = "Lease expired: lost@node1 stopped renewing its claim."
    assert list(Status.objects.values_list("state", "note", "reason")) == [(3, note, "lost-lease")]


@pytest.mark.django_db
def test_expired_lease_spends_the_attempt_when_the_policy_says_so():
    project = make_project(name="P", max_attempts=2, retry_policy={"lost-lease": {"spend": True}})
    dataset = make_dataset(project)
    first = claims.claim_next(holder="lost@node1", lease_seconds=60)
    assert first is not None
    later = timezone.now() + datetime.timedelta(seconds=61)
    assert claims.reclaim_expired(later) == 1
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.claim_id) == ("pending", 1, None)
    # The next claim is the second attempt; when it expires too the dataset has failed.
    assert claims.claim_next(holder="b") is not None
    assert claims.reclaim_expired(timezone.now() + datetime.timedelta(hours=1)) == 1
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts) == ("failed", 2)
    # The late client's status is refused.
    with pytest.raises(claims.LeaseExpired):
        statuses.record_status(dataset=dataset, stage=1, state=2, claim_id=first.id)


@pytest.mark.django_db
def test_release_does_not_count_the_attempt():
    dataset = make_dataset()
    claim = claims.claim_next(holder="a")
    claims.release(claim.id, note="Stopped by SIGTERM.")
    dataset.refresh_from_db()
    assert (dataset.state, dataset.attempts, dataset.note) == (
        DatasetState.PENDING,
        0,
        "Stopped by SIGTERM.",
    )


def queries_for_one_claim() -> int:
    claims.reclaim_expired()  # the sweep runs every few seconds, not within a claim
    with CaptureQueriesContext(connection) as context:
        assert claims.claim_next(holder="a") is not None
    return len(context)


@pytest.mark.django_db
def test_queries_per_claim_do_not_depend_on_the_number_of_datasets():
    small, large = make_project(name="Small"), make_project(name="Large")
    bulk_datasets(small, 10)
    first = queries_for_one_claim()
    bulk_datasets(large, 5000)
    assert queries_for_one_claim() == first
    assert first <= 7


@pytest.mark.django_db
def test_a_retried_claim_request_gets_the_same_claim():
    make_dataset(name="a")
    make_dataset(name="b")
    first = claims.claim_next(holder="x", key="request-1")
    again = claims.claim_next(holder="x", key="request-1")
    assert again is not None and first is not None
    assert (again.id, again.dataset.pk) == (first.id, first.dataset.pk)
    assert Dataset.objects.pending().count() == 1


@pytest.mark.django_db
def test_statuses_and_renewals_keep_the_claims_own_lease_length():
    dataset = make_dataset()
    claim = claims.claim_next(holder="x", lease_seconds=8)
    statuses.record_status(dataset=dataset, stage=1, state=1, claim_id=claim.id)
    dataset.refresh_from_db()
    assert dataset.lease_expires - dataset.heartbeat <= datetime.timedelta(seconds=8)
    expires = claims.renew_lease(claim.id)
    assert expires - timezone.now() <= datetime.timedelta(seconds=8)


@pytest.mark.django_db
def test_a_failed_dataset_waits_its_retry_delay_doubling_per_attempt():
    project = make_project(name="Slow", retry_delay=2, max_attempts=3)
    dataset = make_dataset(project, name="d")
    failed_at = []
    for attempt in (1, 2):
        claim = claims.claim_next(holder="h", project=project)
        assert claim is not None and claim.dataset.pk == dataset.pk
        statuses.record_status(dataset=dataset, stage=1, state=3, claim_id=claim.id)
        dataset.refresh_from_db()
        failed_at.append(timezone.now())
        assert dataset.state == "pending"
        assert claims.claim_next(holder="h", project=project) is None  # not before its time
        delay = (dataset.not_before - failed_at[-1]).total_seconds()
        assert 2 * 2 ** (attempt - 1) - 1 < delay <= 2 * 2 ** (attempt - 1)
        Dataset.objects.filter(pk=dataset.pk).update(not_before=timezone.now())
