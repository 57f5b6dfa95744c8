"""No run lost or stuck: leases, the reaper and the reconciler.

A worker killed with SIGKILL mid-run leaves its run `running` with a lease
nobody renews; the reaper gives it back to the queue (or errors it once its
attempts are spent) and the re-run continues from the checkpoint. A run whose
wake-up message was lost is found by the reconciler and run once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid

import pytest
from django.db import transaction
from django.db.models.functions import Now

from cronsvc.celery import app
from cronsvc.selectors import assistant_get_or_404
from runs import leases, lifecycle, streaming, tasks
from runs.lifecycle import run_claim_next, run_finish
from runs.models import Run
from runs.services import run_create
from tests.conftest import QUEUE, Proc, start_beat, start_worker, subprocess_env, wait_until
from tests.factories import ai_messages_in_checkpoint
from threads.models import Thread
from threads.services import thread_create

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


@pytest.fixture
def woken(monkeypatch):
    """Wake-ups are recorded, not published, and the test's rows stay
    uncommitted: no worker of the session sees or claims its runs.
    (Inside the transaction Now() stands still; on-commit callbacks run at once.)"""
    counts: list[int] = []
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    monkeypatch.setattr("runs.wakeups.wake_workers", counts.append)
    monkeypatch.setattr(transaction, "on_commit", lambda fn, using=None, robust=False: fn())
    with transaction.atomic():
        yield counts


def expire_lease(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(lease_expires_at=Now() - dt.timedelta(seconds=1))


def test_claim_takes_a_lease_and_renewal_extends_it_for_that_attempt_only(woken, settings):
    settings.CRONSVC_RUN_LEASE_SECONDS = 60
    thread = thread_create()
    run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
    run = run_claim_next(thread_id=thread.thread_id)
    assert (run.status, run.attempts) == ("running", 1)
    lease = (run.lease_expires_at - run.started_at).total_seconds()
    assert 59 < lease < 61
    assert lifecycle.run_lease_renew(run_id=run.run_id, attempt=1) is True
    assert lifecycle.run_lease_renew(run_id=run.run_id, attempt=2) is False


def test_reaper_requeues_an_expired_run_and_a_late_finish_of_the_old_attempt_is_refused(woken):
    thread = thread_create()
    run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
    first = run_claim_next(thread_id=thread.thread_id)
    assert leases.runs_reap() == {"requeued": 0, "errored": 0}  # lease still valid
    expire_lease(first)

    assert leases.runs_reap() == {"requeued": 1, "errored": 0}
    assert woken == [1]
    first.refresh_from_db()
    assert (first.status, first.attempts, first.started_at, first.lease_expires_at) == (
        "pending",
        1,
        None,
        None,
    )
    assert leases.runs_reap() == {"requeued": 0, "errored": 0}

    second = run_claim_next(thread_id=thread.thread_id)
    assert (second.run_id, second.attempts) == (first.run_id, 2)
    # The killed-but-not-dead first attempt wakes up: it can neither renew nor finish.
    assert lifecycle.run_lease_renew(run_id=first.run_id, attempt=1) is False
    assert run_finish(run_id=first.run_id, status="success", output={"a": 1}, attempt=1) is False
    assert run_finish(run_id=first.run_id, status="success", output={"b": 2}, attempt=2) is True
    assert run_finish(run_id=first.run_id, status="success", output={"c": 3}, attempt=2) is False
    second.refresh_from_db()
    assert (second.status, second.output, second.lease_expires_at) == ("success", {"b": 2}, None)


def test_reaper_errors_a_run_whose_attempts_are_spent_with_the_reason(woken, settings):
    settings.CRONSVC_RUN_MAX_ATTEMPTS = 2
    thread = thread_create()
    run = run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
    for attempt in (1, 2):
        claimed = run_claim_next(thread_id=thread.thread_id)
        assert claimed.attempts == attempt
        expire_lease(claimed)
        leases.runs_reap()
    run.refresh_from_db()
    assert run.status == "error"
    assert run.error == (
        "Run's worker was lost (lease expired) on attempt 2 of 2 (CRONSVC_RUN_MAX_ATTEMPTS)"
    )
    assert run.output == {"error": "WorkerLost", "message": run.error}
    assert run.finished_at is not None and run.lease_expires_at is None
    assert woken == [1]  # the first reap only
    thread.refresh_from_db()
    assert thread.status == "error"
    assert leases.runs_reap() == {"requeued": 0, "errored": 0}


def test_reconciler_wakes_only_runs_ready_and_pending_longer_than_the_delay(woken):
    agent = assistant_get_or_404("agent")
    stalled = run_create(thread=thread_create(), assistant=agent, kwargs=QUESTION)
    fresh = run_create(thread=thread_create(), assistant=agent, kwargs=QUESTION)
    Run.objects.filter(pk=stalled.pk).update(updated_at=Now() - dt.timedelta(minutes=5))
    assert leases.runs_reconcile(after=60) == {"stalled": 1, "woken": 1, "webhooks": 0}
    assert woken == [1]
    # The wake-up only claims: drained once, the run is done, a second pass finds nothing.
    assert tasks.drain() == 2  # the fresh one is ready too
    for run in (stalled, fresh):
        run.refresh_from_db()
        assert (run.status, run.attempts) == ("success", 1)
    assert leases.runs_reconcile(after=0) == {"stalled": 0, "woken": 0, "webhooks": 0}


def stateless_run_here(agent, **kwargs) -> Run:
    """A stateless run (on_completion="delete") created and executed in this process."""
    run = run_create(
        thread=thread_create(), assistant=agent, kwargs=QUESTION, on_completion="delete", **kwargs
    )
    assert tasks.drain(str(run.thread_id)) >= 1
    run.refresh_from_db()
    assert run.status == "success"
    return run


def test_a_stateless_thread_whose_deletion_message_was_lost_goes_in_one_reconcile_pass(
    woken, monkeypatch, settings
):
    dropped: list[str] = []
    # The deletion message is lost: published nowhere.
    monkeypatch.setattr(
        "runs.wakeups.delete_stateless_thread",
        lambda thread_id, countdown, batched=False: dropped.append(thread_id),
    )
    monkeypatch.setattr("runs.wakeups.deliver_webhook", lambda run_id: None)
    agent = assistant_get_or_404("agent")
    lost = stateless_run_here(agent)
    recent = stateless_run_here(agent)
    delivering = stateless_run_here(agent)
    kept = run_create(thread=thread_create(), assistant=agent, kwargs=QUESTION)  # not stateless
    assert tasks.drain(str(kept.thread_id)) == 1
    assert dropped == [str(r.thread_id) for r in (lost, recent, delivering)]
    long_ago = Now() - dt.timedelta(
        seconds=settings.CRONSVC_STATELESS_THREAD_GRACE + settings.CRONSVC_RECONCILE_AFTER + 1
    )
    Run.objects.filter(pk__in=[lost.pk, delivering.pk, kept.pk]).update(finished_at=long_ago)
    # A webhook still being delivered reads the thread's values: not yet.
    Run.objects.filter(pk=delivering.pk).update(webhook_status="pending")

    result = tasks.reconcile.apply().get()

    assert result["threads"] == 1
    assert not Thread.objects.filter(pk=lost.thread_id).exists()
    assert not Run.objects.filter(pk=lost.pk).exists()
    remaining = {recent.thread_id, delivering.thread_id, kept.thread_id}
    assert set(Thread.objects.filter(pk__in=remaining).values_list("pk", flat=True)) == remaining
    # Once the delivery has settled, the next pass takes that thread too; then nothing.
    Run.objects.filter(pk=delivering.pk).update(webhook_status="delivered")
    assert leases.stateless_threads_reconcile() == 1
    assert leases.stateless_threads_reconcile() == 0
    assert Thread.objects.filter(pk=recent.thread_id).exists()


def test_an_open_stream_holds_its_stateless_runs_thread_until_it_ends(woken, monkeypatch):
    # A relay that reads late (a loaded server) must still find the run's
    # events: the thread waits for the stream, then goes when it ends.
    deletions: list[str] = []
    monkeypatch.setattr(
        "runs.wakeups.delete_stateless_thread",
        lambda thread_id, countdown, batched=False: deletions.append(thread_id),
    )
    monkeypatch.setattr("runs.wakeups.deliver_webhook", lambda run_id: None)
    run = stateless_run_here(assistant_get_or_404("agent"))
    thread_id = str(run.thread_id)
    registration = streaming._hold_thread(run.thread_id)
    assert registration is not None

    lifecycle.thread_delete_when_idle(thread_id=thread_id)
    assert Thread.objects.filter(pk=thread_id).exists()
    Run.objects.filter(pk=run.pk).update(
        finished_at=Now() - dt.timedelta(days=1)  # long past any grace
    )
    assert leases.stateless_threads_reconcile() == 0

    deletions.clear()
    streaming._release_thread(registration, run.thread_id)
    assert deletions == [thread_id]  # the deletion it held back, asked again
    lifecycle.thread_delete_when_idle(thread_id=thread_id)
    assert not Thread.objects.filter(pk=thread_id).exists()
    assert streaming._hold_thread(run.thread_id) is None  # gone: nothing to hold


def start_private_worker(tmp_path, queue: str, name: str, **env) -> Proc:
    """A worker consuming only `queue`, which no other worker of the session reads."""
    proc = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cronsvc",
            "worker",
            "--pool=threads",
            "--concurrency=2",
            "-Q",
            queue,
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        subprocess_env(tmp_path, **env),
        f"worker {name}",
    )
    proc.wait_for("ready.", timeout=60)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("max_attempts", ["3", "1"], ids=["rerun", "attempts-spent"])
def test_kill_9_of_a_worker_mid_run_reruns_it_once_or_errors_it(
    tmp_path, monkeypatch, max_attempts
):
    private = f"{QUEUE}-killed-{uuid.uuid4().hex[:6]}"
    # The run's wake-up goes to the worker that will be killed, and only to it.
    monkeypatch.setattr(
        "runs.wakeups.wake_thread",
        lambda thread_id: tasks.drain.apply_async((str(thread_id),), queue=private),
    )
    lease = {"CRONSVC_RUN_LEASE_SECONDS": "2", "CRONSVC_RUN_MAX_ATTEMPTS": max_attempts}
    doomed = start_private_worker(
        tmp_path / "a", private, "doomed", SLOW_GRAPH_SECONDS="6", **lease
    )
    survivor = beat = None
    try:
        thread = thread_create()
        run = run_create(thread=thread, assistant=assistant_get_or_404("slow"), kwargs=QUESTION)
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="running").exists(), timeout=30)
        time.sleep(1)  # inside the node's 6 s wait
        doomed.popen.kill()
        doomed.popen.wait()
        killed_at = time.monotonic()
        assert Run.objects.get(pk=run.pk).status == "running"

        # Survivor and beat use a queue of their own, so the reaper and the
        # re-run happen there (with these settings), not on the session's worker.
        rescue = f"{QUEUE}-rescue-{uuid.uuid4().hex[:6]}"
        survivor = start_private_worker(
            tmp_path / "b",
            rescue,
            "survivor",
            CELERY_QUEUE=rescue,
            SLOW_GRAPH_SECONDS="0.5",
            **lease,
        )
        beat = start_beat(
            tmp_path / "beat",
            CELERY_QUEUE=rescue,
            CRONSVC_REAP_INTERVAL="0.5",
            CRONSVC_RECONCILE_INTERVAL="3600",
            **lease,
        )
        wait_until(
            lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).exists(), timeout=60
        )
        took = time.monotonic() - killed_at
        time.sleep(2)  # nothing more happens to it
        run.refresh_from_db()
        if max_attempts == "3":
            assert (run.status, run.attempts, run.error) == ("success", 2, None)
            # The re-run continued from the first attempt's checkpoint: one question, one answer.
            assert [m["type"] for m in run.output["messages"]] == ["human", "ai"]
            assert run.output["messages"][1]["content"] == "Answered after 0.5 s."
            assert ai_messages_in_checkpoint(thread.thread_id) == 1
            assert "back to pending" in survivor.output()
        else:
            assert (run.status, run.attempts) == ("error", 1)
            assert run.error == (
                "Run's worker was lost (lease expired) on attempt 1 of 1 (CRONSVC_RUN_MAX_ATTEMPTS)"
            )
        assert run.lease_expires_at is None
        assert took < 45
    finally:
        for proc in (beat, survivor, doomed):
            if proc is not None:
                proc.stop()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(private)
            if survivor is not None:
                conn.default_channel.queue_purge(rescue)


@pytest.mark.slow
def test_a_pending_run_whose_wake_up_was_lost_is_run_once_by_the_reconciler(tmp_path, monkeypatch):
    void = f"{QUEUE}-void-{uuid.uuid4().hex[:6]}"
    # The wake-up is published where nobody reads: as lost as a message can be.
    monkeypatch.setattr(
        "runs.wakeups.wake_thread",
        lambda thread_id: tasks.drain.apply_async((str(thread_id),), queue=void),
    )
    # The reconciler runs on the worker (beat only sends it): both get the delay.
    reconcile = {
        "CRONSVC_RECONCILE_AFTER": "2",
        "CRONSVC_RECONCILE_INTERVAL": "0.5",
        "CRONSVC_REAP_INTERVAL": "3600",
    }
    worker = start_worker(tmp_path / "w", name="reconciled", **reconcile)
    beat = start_beat(tmp_path / "beat", **reconcile)
    try:
        thread = thread_create()
        created = time.monotonic()
        run = run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="success").exists(), timeout=30)
        took = time.monotonic() - created
        time.sleep(2)  # further passes find nothing to do
        run.refresh_from_db()
        assert (run.status, run.attempts, run.error) == ("success", 1, None)
        assert [m["type"] for m in run.output["messages"]] == ["human", "ai"]
        assert ai_messages_in_checkpoint(thread.thread_id) == 1
        assert took >= 2  # not before the reconciler's delay
        assert "waited over 2 s for a worker" in worker.output()
    finally:
        beat.stop()
        worker.stop()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(void)


@pytest.mark.slow
def test_fault_soak_small_loses_and_doubles_nothing():
    # Its own Redis, scratch database, beat and two workers (bench/fault_soak.py).
    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "bench/fault_soak.py", "--small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "missing 0, doubled 0, stuck 0, skipped (recorded) 0" in result.stdout
