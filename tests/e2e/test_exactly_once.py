"""The same tick delivered twice yields one run and one fired tick: redelivered
task messages, two schedulers ticking at once, two real beat processes."""

import datetime as dt
import itertools
import threading
import time

import pytest
from django.db import connection

from crons import ticking
from crons.models import Cron, SchedulerLease, Tick
from crons.services import cron_backfill, cron_create, cron_trigger
from cronsvc.models import BeatHeartbeat
from cronsvc.selectors import assistant_get_or_404
from runs import tasks
from runs.models import Run
from runs.services import run_create
from tests.conftest import start_beat, wait_until
from threads.services import thread_create

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


def in_threads(n, target):
    errors = []

    def wrapped():
        try:
            target()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=wrapped) for _ in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []


def test_redelivered_task_runs_the_graph_once(monkeypatch):
    # Deliveries are made by hand here: no message reaches the session's worker.
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    thread = thread_create()
    run = run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
    # Three deliveries of the wake-up message, two of them at the same time.
    in_threads(2, lambda: tasks.drain(str(thread.thread_id)))
    assert tasks.drain(str(thread.thread_id)) == 0
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("success", 1)
    assert [m["type"] for m in run.output["messages"]] == ["human", "ai"]


def test_two_schedulers_ticking_at_once_fire_each_instant_once(monkeypatch):
    # No wake-ups: the session's worker must not be draining these runs while
    # the test database is flushed.
    monkeypatch.setattr("crons.ticking.wake_workers", lambda count: None)
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    agent = assistant_get_or_404("agent")
    crons = [cron_create(assistant=agent, schedule="* * * * *", now=start) for _ in range(40)]
    for minute in (1, 2, 3):
        now = start + dt.timedelta(minutes=minute)
        in_threads(2, lambda now=now: ticking.fire_due(now=now, batch=7))
        ticking.advance()
    assert Tick.objects.count() == 40 * 3
    assert Run.objects.count() == 40 * 3
    assert set(Tick.objects.values_list("status", flat=True)) == {"fired"}
    for cron in crons:
        assert sorted(Run.objects.filter(cron=cron).values_list("scheduled_at", flat=True)) == [
            start + dt.timedelta(minutes=m) for m in (1, 2, 3)
        ]


def test_beats_backfills_and_triggers_at_once_fire_each_instant_once(monkeypatch):
    # Two beats find each cron 2 minutes late (instants 1 and 2 recorded
    # skipped, 3 fired) while two backfills of instants 1-3 and triggers in
    # instant 3's very second run: one tick of each instant, one run of each
    # fired one, and the manual ticks apart.
    monkeypatch.setattr("crons.ticking.wake_workers", lambda count: None)
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    now = start + dt.timedelta(minutes=3)
    later = now + dt.timedelta(seconds=1)
    first = start + dt.timedelta(seconds=1)  # the instants after the crons were made: 1, 2, 3
    agent = assistant_get_or_404("agent")
    crons = [cron_create(assistant=agent, schedule="* * * * *", now=start) for _ in range(12)]

    def backfill():
        for cron in crons:
            cron_backfill(cron=cron, start=first, end=later, now=later)

    def trigger():
        for cron in crons:
            cron_trigger(cron=cron, now=now)

    targets = [lambda: ticking.fire_due(now=now, batch=5)] * 2 + [backfill] * 2 + [trigger]
    it = iter(targets)
    in_threads(len(targets), lambda: next(it)())
    ticking.advance()
    # Whatever a beat recorded skipped after a backfill had looked: one more backfill fires it.
    reports = [cron_backfill(cron=cron, start=first, end=later, now=later) for cron in crons]

    assert sum(r.instants for r in reports) == 12 * 3
    assert sum(r.rejected for r in reports) == 0
    instants = [start + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    for cron in crons:
        ticks = Tick.objects.filter(cron=cron).exclude(kind="manual")
        assert sorted(t.scheduled_at for t in ticks) == instants
        assert {t.status for t in ticks} == {"fired"}
        runs = Run.objects.filter(cron=cron, scheduled_at__isnull=False)
        assert sorted(runs.values_list("scheduled_at", flat=True)) == instants
        assert {t.run_id for t in ticks} == set(runs.values_list("run_id", flat=True))
        manual = Tick.objects.get(cron=cron, kind="manual")
        assert (manual.scheduled_at, manual.status) == (now, "fired")
        assert Run.objects.filter(cron=cron, scheduled_at__isnull=True).count() == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "lease_seconds", ["10", "0.1"], ids=["with-lease", "lease-expiring-every-tick"]
)
def test_two_beat_processes_fire_each_tick_once(tmp_path, lease_seconds):
    # Both beats run; with a lease shorter than their tick they take it from each other
    # on every tick, so only the row claims and unique keys stand between
    # them and a double fire.
    agent = assistant_get_or_404("agent")
    beats = [
        start_beat(
            tmp_path / f"b{i}",
            CRONSVC_BEAT_LEASE_SECONDS=lease_seconds,
            CRONSVC_BEAT_MAX_INTERVAL="0.2",
        )
        for i in range(2)
    ]
    time.sleep(1)  # both are ticking
    # "keep": a worker running meanwhile must not delete the runs with their threads.
    cron = cron_create(assistant=agent, schedule="* * * * * */2", on_run_completed="keep")
    try:
        wait_until(lambda: Tick.objects.filter(cron=cron).count() >= 6, timeout=40)
        time.sleep(2)
        # Both show alive, the one firing and the one waiting (health checks).
        beating = set(BeatHeartbeat.objects.values_list("name", flat=True))
        assert len(beating) == 2
        assert SchedulerLease.objects.get().holder in beating
    finally:
        for beat in beats:
            beat.stop()
    assert not BeatHeartbeat.objects.exists()  # removed on a clean stop
    ticks = list(Tick.objects.filter(cron=cron).order_by("scheduled_at"))
    instants = [t.scheduled_at for t in ticks]
    assert len(instants) == len(set(instants))
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(instants)}
    assert steps == {2.0}, f"gaps or doubles: {instants}"
    assert [(t.status, t.reason) for t in ticks if t.status != "fired"] == []
    runs = Run.objects.filter(cron=cron)
    assert sorted(runs.values_list("scheduled_at", flat=True)) == instants
    assert Cron.objects.get(pk=cron.pk).next_run_date > instants[-1]


def test_triggered_and_backfilled_runs_redelivered_run_their_graph_once(monkeypatch):
    # Each run a trigger or a backfill made gets its wake-up three times, two
    # at once (as a broker redelivers after a lost ack): one attempt each.
    monkeypatch.setattr("crons.ticking.wake_workers", lambda count: None)
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    later = start + dt.timedelta(minutes=3, seconds=1)
    cron = cron_create(
        assistant=assistant_get_or_404("agent"),
        schedule="* * * * *",
        payload=QUESTION,
        on_run_completed="keep",
        now=start,
    )
    cron_backfill(cron=cron, start=start + dt.timedelta(seconds=1), end=later, now=later)
    cron_trigger(cron=cron, now=later)
    runs = list(Run.objects.filter(cron=cron))
    assert len(runs) == 4
    for run in runs:
        in_threads(2, lambda run=run: tasks.drain(str(run.thread_id)))
        assert tasks.drain(str(run.thread_id)) == 0
        run.refresh_from_db()
        assert (run.status, run.attempts) == ("success", 1)
        assert [m["type"] for m in run.output["messages"]] == ["human", "ai"]
    assert Tick.objects.filter(cron=cron, status="fired").count() == 4
