"""Claiming pending runs: one running run per thread, each thread's runs in
order, nothing before its instant; and the thread status a finish leaves."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import lifecycle, wakeups
from runs.models import Run
from tests.factories import make_run
from threads.models import Thread
from threads.services import thread_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_wake_ups(monkeypatch):
    # Claims are driven by hand here; no worker may take these runs.
    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)


def test_a_thread_runs_one_run_at_a_time_in_creation_order():
    a, b = thread_create(), thread_create()
    a1, a2 = make_run(a), make_run(a)
    b1 = make_run(b)

    first = lifecycle.run_claim_ready()
    second = lifecycle.run_claim_ready()

    assert (first.run_id, first.status, first.attempts) == (a1.run_id, "running", 1)
    assert first.lease_expires_at is not None and first.assistant.graph_id == "agent"
    assert second.run_id == b1.run_id  # a2 waits: a1 is running on its thread
    assert lifecycle.run_claim_ready() is None
    assert lifecycle.run_claim_next(thread_id=a.thread_id) is None

    lifecycle.run_finish(run_id=a1.run_id, status="success", attempt=1)
    assert lifecycle.run_claim_next(thread_id=a.thread_id).run_id == a2.run_id


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement claim")
def test_the_oldest_ready_run_on_an_idle_thread_is_claimed_in_one_statement():
    # A cron's burst: each run on its own thread, claimed in one round trip,
    # with no transaction around it.
    runs = [make_run(thread_create()) for _ in range(3)]

    with CaptureQueriesContext(connection) as queries:
        claimed = lifecycle.run_claim_ready()

    assert claimed.run_id == runs[0].run_id and claimed.assistant.graph_id == "agent"
    assert len(queries) == 1, [q["sql"][:60] for q in queries]
    assert Run.objects.get(pk=runs[0].pk).status == "running"
    assert [lifecycle.run_claim_ready().run_id for _ in range(2)] == [r.run_id for r in runs[1:]]
    assert lifecycle.run_claim_ready() is None


def test_nothing_is_claimed_before_its_instant_nor_jumps_the_queue():
    thread = thread_create()
    later = make_run(thread, scheduled_at=timezone.now() + timedelta(hours=1))
    make_run(thread)  # ready, but after `later` on the same thread

    assert lifecycle.run_claim_ready() is None
    assert lifecycle.run_claim_next(thread_id=thread.thread_id) is None

    Run.objects.filter(pk=later.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.run_claim_ready().run_id == later.run_id


@pytest.mark.parametrize(
    ("status", "cancel_action", "thread_status"),
    [
        ("success", None, "idle"),
        ("error", None, "error"),
        ("interrupted", None, "interrupted"),
        ("interrupted", "interrupt", "idle"),
    ],
)
def test_a_finish_settles_the_thread_from_its_last_run(status, cancel_action, thread_status):
    thread = thread_create()
    make_run(thread)
    run = lifecycle.run_claim_ready()
    Run.objects.filter(pk=run.pk).update(cancel_action=cancel_action)
    assert Thread.objects.get(pk=thread.pk).status == "busy"

    lifecycle.run_finish(run_id=run.run_id, status=status, values={"n": 1}, attempt=1)

    thread = Thread.objects.get(pk=thread.pk)
    assert (thread.status, thread.values) == (thread_status, {"n": 1})


def test_a_thread_with_a_run_still_pending_stays_busy_after_a_finish():
    thread = thread_create()
    make_run(thread)
    make_run(thread)
    run = lifecycle.run_claim_ready()

    lifecycle.run_finish(run_id=run.run_id, status="success", attempt=1)

    assert Thread.objects.get(pk=thread.pk).status == "busy"


def test_leases_are_renewed_together_only_for_the_attempt_holding_each_run():
    from runs.leases import LeaseKeeper, LeaseRenewer

    held, reclaimed, gone = (make_run(thread_create()) for _ in range(3))
    runs = [lifecycle.run_claim_ready() for _ in range(3)]
    assert {r.run_id for r in runs} == {held.run_id, reclaimed.run_id, gone.run_id}
    Run.objects.filter(pk=reclaimed.pk).update(attempts=2)  # reaped and claimed again
    Run.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now())

    renewed, lost = lifecycle.run_leases_renew(
        [(held.run_id, 1), (reclaimed.run_id, 1), (gone.run_id, 1)]
    )
    assert (renewed, lost) == ({str(held.run_id), str(gone.run_id)}, {str(reclaimed.run_id)})
    assert Run.objects.get(pk=held.pk).lease_expires_at > timezone.now() + timedelta(seconds=5)

    Run.objects.filter(pk=gone.pk).delete()
    assert lifecycle.run_leases_renew([(gone.run_id, 1)]) == (set(), {str(gone.run_id)})

    # The process's renewer, one beat by hand: due leases renewed, lost ones marked.
    renewer = LeaseRenewer()
    keepers = [LeaseKeeper(r) for r in runs]
    for keeper in keepers:
        keeper.renewed_at -= keeper.interval
        renewer.add(keeper)
    renewer.renew_due()
    by_id = {k.run_id: k for k in keepers}
    assert not by_id[held.run_id].lost.is_set()
    assert by_id[reclaimed.run_id].lost.is_set() and by_id[gone.run_id].lost.is_set()
    for keeper in keepers:
        renewer.discard(keeper)


def test_a_batch_of_stateless_threads_is_deleted_once_each_is_idle():
    idle_a, idle_b, busy = thread_create(), thread_create(), thread_create()
    for thread in (idle_a, idle_b):
        make_run(thread)
        run = lifecycle.run_claim_next(thread_id=thread.thread_id)
        lifecycle.run_finish(run_id=run.run_id, status="success", attempt=1)
    make_run(busy)  # still pending: its thread stays

    lifecycle.threads_delete_when_idle(
        thread_ids=[str(t.thread_id) for t in (idle_a, busy, idle_b)] + [str(idle_a.thread_id)]
    )

    left = set(Thread.objects.values_list("thread_id", flat=True))
    assert busy.thread_id in left
    assert not {idle_a.thread_id, idle_b.thread_id} & left
    assert Run.objects.filter(thread_id=busy.thread_id).count() == 1
    assert not Run.objects.filter(thread_id__in=[idle_a.thread_id, idle_b.thread_id]).exists()
