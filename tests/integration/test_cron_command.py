"""`python manage.py crons ...`: the scheduler controls from a shell, through
the same services as the API."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from crons.models import Cron, Tick
from cronsvc.dbclock import db_now
from runs.models import Run
from tests.factories import make_cron

pytestmark = pytest.mark.django_db

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


def crons(*args: str) -> str:
    out = StringIO()
    call_command("crons", *args, stdout=out)
    return out.getvalue()


def test_list_describe_trigger_backfill_pause_resume(parked_runs):
    cron = make_cron("*/10 * * * *", payload=QUESTION)
    cid = str(cron.cron_id)

    listed = crons("list")
    assert cid in listed and "*/10 * * * *" in listed and "stateless" in listed
    assert "1 of 1 crons" in listed

    triggered = crons("trigger", cid)
    tick = Tick.objects.get(cron=cron)
    assert tick.kind == "manual"
    assert triggered.strip() == (
        f"Triggered cron {cid}: run {tick.run_id} (pending) "
        f"on thread {Run.objects.get(pk=tick.run_id).thread_id}"
    )

    end = db_now().replace(microsecond=0)
    window = ["--start", (end - dt.timedelta(hours=1)).isoformat(), "--end", end.isoformat()]
    assert crons("backfill", cid, *window).strip() == (
        f"Backfilled cron {cid}: 6 instants, 6 fired, 0 already fired, 0 rejected"
    )
    assert "0 fired, 6 already fired" in crons("backfill", cid, *window)
    assert Run.objects.filter(cron=cron).count() == 7

    assert crons("pause", cid).startswith(f"Paused cron {cid}")
    assert Cron.objects.get(pk=cid).enabled is False
    assert cid in crons("list", "--disabled") and cid not in crons("list", "--enabled")
    resumed = crons("resume", cid)
    cron.refresh_from_db()
    assert cron.enabled is True
    assert f"next run {cron.next_run_date.isoformat()}" in resumed

    described = crons("describe", cid, "--ticks", "3")
    assert "schedule:   */10 * * * *" in described
    assert "enabled:    yes" in described
    assert "next instants (UTC):" in described
    assert "ticks: 7 recorded, newest first:" in described
    lines = [line for line in described.splitlines() if "attempts)" in line]
    assert len(lines) == 3 and "manual" in lines[0] and "backfill" in lines[1]


def test_errors_are_clear_and_write_nothing():
    cron = make_cron("*/10 * * * *")
    cid = str(cron.cron_id)
    now = db_now()
    with pytest.raises(CommandError, match="Cron 'nope' not found"):
        crons("trigger", "nope")
    with pytest.raises(CommandError, match="is in the future"):
        crons(
            "backfill",
            cid,
            "--start",
            now.isoformat(),
            "--end",
            (now + dt.timedelta(hours=1)).isoformat(),
        )
    with pytest.raises(CommandError, match="--start 'soon' is not an ISO 8601"):
        crons("backfill", cid, "--start", "soon", "--end", now.isoformat())
    assert (Tick.objects.count(), Run.objects.count()) == (0, 0)


def test_describe_shows_the_policies_and_resume_keeps_the_max_runs_rule():
    start = db_now() + dt.timedelta(days=2)
    cron = make_cron("0 * * * *", overlap_policy="skip", max_runs=3, start_time=start)
    described = crons("describe", str(cron.cron_id))
    assert "overlap:    skip" in described
    assert "max runs:   3 (3 remaining)" in described
    assert f"start time: {start.isoformat()}" in described
    Cron.objects.filter(pk=cron.pk).update(
        remaining_runs=0, enabled=False, paused_reason="max_runs reached: 3 scheduled run(s) fired"
    )
    assert "paused:     max_runs reached" in crons("describe", str(cron.cron_id))
    assert "catch-up:   latest within the grace (300 s)" in described
    assert "jitter:     -" in described
    caught = make_cron("0 * * * *", catchup="all", catchup_window=1800, jitter=60)
    described = crons("describe", str(caught.cron_id))
    assert "catch-up:   all within 1800 s" in described
    assert "jitter:     60 s" in described
    assert "retries:    -" in described
    assert "failures:   0 in a row" in described
    retried = make_cron(
        "0 * * * *",
        retry_policy={"max_attempts": 3, "initial_interval": 30},
        max_consecutive_failures=5,
    )
    Cron.objects.filter(pk=retried.pk).update(
        consecutive_failures=2, last_run_final_status="error", last_run_date=start
    )
    described = crons("describe", str(retried.cron_id))
    assert "retries:    up to 3 attempts, 30 s x 2 apart (at most 3000 s)" in described
    assert "failures:   2 in a row (pauses at 5)" in described
    assert f"last run:   error at {start.isoformat()}" in described
    with pytest.raises(CommandError, match="max_runs"):
        crons("resume", str(cron.cron_id))
    assert Cron.objects.get(pk=cron.pk).enabled is False
