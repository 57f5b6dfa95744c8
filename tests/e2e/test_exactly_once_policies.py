"""Exactly once holds for crons with an overlap policy and a max_runs: two
schedulers ticking at once record each instant once, decide each overlap once
and count each fired tick once."""

import datetime as dt

import pytest

from crons import ticking
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
