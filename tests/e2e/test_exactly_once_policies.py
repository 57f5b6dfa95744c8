"""Exactly once holds for crons with an overlap policy and a max_runs: two
schedulers ticking at once record each instant once, decide each overlap once
and count each fired tick once."""

import datetime as dt

import pytest

from crons import dispatch, ticking
from crons.models import Cron, Tick
from crons.services import cron_create
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from tests.e2e.test_exactly_once import in_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("parked_runs")]

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
MINUTES = (1, 2, 3, 4)


def at(minute: int) -> dt.datetime:
    return START + dt.timedelta(minutes=minute)


def test_two_schedulers_ticking_policy_crons_at_once(monkeypatch):
    # No wake-ups: no worker starts these runs, so each earlier run stays pending.
    monkeypatch.setattr("crons.ticking.wake_workers", lambda count: None)
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    agent = assistant_get_or_404("agent")

    def make(n, **kwargs):
        return [
            cron_create(assistant=agent, schedule="* * * * *", now=START, **kwargs)
            for _ in range(n)
        ]

    skip = make(8, overlap_policy="skip", max_runs=3)
    buffered = make(8, overlap_policy="buffer_all", max_runs=2)
    one = make(8, overlap_policy="buffer_one")
    cancel = make(8, overlap_policy="cancel_other")
    for minute in MINUTES:
        now = at(minute)
        in_threads(2, lambda now=now: ticking.fire_due(now=now, batch=5))
        ticking.advance()

    def statuses(cron):
        ticks = Tick.objects.filter(cron=cron).order_by("scheduled_at")
        return [t.status for t in ticks]

    for cron in Cron.objects.all():
        ticks = Tick.objects.filter(cron=cron)
        # One tick per instant, and a run for each fired tick only.
        assert ticks.count() == len(set(ticks.values_list("scheduled_at", flat=True)))
        fired = set(ticks.filter(status="fired").values_list("run_id", flat=True))
        assert fired == set(Run.objects.filter(cron=cron).values_list("run_id", flat=True))
    for cron in skip:
        assert statuses(cron) == ["fired", "skipped", "skipped", "skipped"]
        row = Cron.objects.get(pk=cron.pk)
        assert (row.remaining_runs, row.enabled) == (2, True)
    for cron in buffered:
        assert statuses(cron) == ["fired", "fired"]  # then out of runs
        row = Cron.objects.get(pk=cron.pk)
        assert (row.remaining_runs, row.enabled) == (0, False)
        first, second = Run.objects.filter(cron=cron).order_by("scheduled_at")
        assert second.after_run_id == first.run_id
    for cron in one:
        assert statuses(cron) == ["fired", "fired", "skipped", "skipped"]
    for cron in cancel:
        assert statuses(cron) == ["fired"] * 4
        runs = list(Run.objects.filter(cron=cron).order_by("scheduled_at"))
        assert [r.status for r in runs] == ["interrupted"] * 3 + ["pending"]


def test_two_schedulers_ticking_jitter_and_catchup_crons_at_once(monkeypatch):
    """Two schedulers at once (batches and the per-cron catch-up, each with
    lookahead): each instant of a jittered cron is recorded once, and both
    agree on its offset, the one computed apart here (a hash of cron and
    instant): the tick's fire_at and the run's not_before are instant + offset,
    scheduled_at the instant. A catchup "all" cron after an outage fires each
    instant within its window once, in order."""
    monkeypatch.setattr("crons.ticking.wake_workers", lambda count: None)
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    agent = assistant_get_or_404("agent")

    def make(n, **kwargs):
        return [
            cron_create(assistant=agent, schedule="* * * * *", now=START, **kwargs)
            for _ in range(n)
        ]

    jittered = make(12, jitter=45)
    catching_up = make(6, catchup="all", catchup_window=150, jitter=20)
    # On time, then 00:02 prepared ahead (lookahead) at 00:01:45.
    for now in (at(1), at(1) + dt.timedelta(seconds=45), at(2)):
        in_threads(2, lambda now=now: ticking.fire_due(now=now, batch=5, lookahead=30))
        ticking.advance()
    # An outage of four minutes; then two schedulers at once again.
    now = at(6) + dt.timedelta(seconds=30)
    in_threads(2, lambda: ticking.fire_due(now=now, batch=5))
    ticking.advance()

    for cron in Cron.objects.all():
        ticks = Tick.objects.filter(cron=cron)
        assert ticks.count() == len(set(ticks.values_list("scheduled_at", flat=True)))
        fired = set(ticks.filter(status="fired").values_list("run_id", flat=True))
        assert fired == set(Run.objects.filter(cron=cron).values_list("run_id", flat=True))
        for tick in ticks.filter(status="fired"):
            offset = dispatch.tick_jitter(cron, tick.scheduled_at)
            assert offset < dt.timedelta(minutes=1)
            run = Run.objects.get(pk=tick.run_id)
            assert tick.fire_at == tick.scheduled_at + offset
            assert run.scheduled_at == tick.scheduled_at
            assert run.not_before == (tick.scheduled_at + offset if offset else None)
    for cron in jittered:
        statuses = dict(Tick.objects.filter(cron=cron).values_list("scheduled_at", "status"))
        # 00:01 and 00:02, then the newest instant after the outage only.
        assert statuses[at(1)] == statuses[at(2)] == statuses[at(6)] == "fired"
        assert {statuses.get(at(m)) for m in (3, 4, 5)} == {"skipped"}
    for cron in catching_up:
        statuses = dict(Tick.objects.filter(cron=cron).values_list("scheduled_at", "status"))
        # Within 150 s of 00:06:30: 00:04, 00:05, 00:06, fired in order.
        assert [statuses.get(at(m)) for m in (4, 5, 6)] == ["fired"] * 3
        runs = Run.objects.filter(cron=cron, scheduled_at__gte=at(4)).order_by("created_at")
        assert [r.scheduled_at for r in runs] == [at(4), at(5), at(6)]
