"""A buffered tick's run on a real worker: it is not taken while the cron's
earlier run goes on, and runs once that run ends (the finish wakes it)."""

import datetime as dt

import pytest

from crons import ticking
from crons.models import Tick
from crons.services import cron_create
from cronsvc.dbclock import db_now
from cronsvc.selectors import assistant_get_or_404
from runs import lifecycle
from runs.models import Run
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


def test_a_buffered_run_starts_on_a_real_worker_when_the_earlier_run_ends(worker, monkeypatch):
    # Instants in the past (the claim reads the database's clock): every run is
    # ready at once, unless it waits for another.
    start = db_now().replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    cron = cron_create(
        assistant=assistant_get_or_404("agent"),
        schedule="* * * * *",
        payload=QUESTION,
        overlap_policy="buffer_one",
        on_run_completed="keep",
        now=start,
    )
    instants = [start + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    # The first tick's run is "still going": this test holds it, as a worker
    # would (no wake-up is sent for it, so the real worker does not take it).
    with monkeypatch.context() as quiet:
        quiet.setattr("crons.ticking.wake_workers", lambda count: None)
        quiet.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
        ticking.fire_due(now=instants[0])
        ticking.advance()
        first = Run.objects.get(cron=cron)
        held = lifecycle.run_claim_next(thread_id=first.thread_id)
    assert held is not None and held.pk == first.pk
    # Next ticks, with real wake-ups: one buffered, then one skipped.
    ticking.fire_due(now=instants[1])
    ticking.advance()
    ticking.fire_due(now=instants[2])
    ticking.advance()
    ticks = list(Tick.objects.filter(cron=cron).order_by("scheduled_at"))
    assert [t.status for t in ticks] == ["fired", "fired", "skipped"]
    second = Run.objects.get(pk=ticks[1].run_id)
    assert second.after_run_id == first.run_id
    # The worker was woken for it and left it: the first run is still going.
    wait_until(lambda: "runs.drain" in worker.output(), timeout=30)
    second.refresh_from_db()
    assert second.status == "pending"
    # The first run ends: its finish wakes the worker for the buffered run.
    assert lifecycle.run_finish(run_id=first.pk, status="success", attempt=held.attempts)
    wait_until(lambda: Run.objects.get(pk=second.pk).status == "success", timeout=60)
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.started_at >= first.finished_at
    assert second.attempts == 1
