"""End to end: GET /metrics over HTTP from the live server, after a real beat
fired a cron at a minute boundary and a real worker ran it, a trigger and a
backfill through the API; parsed with prometheus_client's parser, its
counts match the database (which the worker and beat wrote, not the server)."""

import datetime as dt
import time

import httpx
import pytest
from django.db.models import Count
from prometheus_client.parser import text_string_to_metric_families

from crons.models import Tick
from runs.models import Run
from tests.conftest import start_beat, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def scrape(live_server) -> dict:
    response = httpx.get(f"{live_server.url}/metrics", timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_match_the_database(sdk, worker, live_server, tmp_path):
    now = dt.datetime.now(dt.UTC)
    if now.second >= 45:  # keep clear of the boundary: the cron's first tick is the next one
        time.sleep(61 - now.second)
    every_minute = sdk.crons.create(
        "agent", schedule="* * * * *", input=QUESTION, on_run_completed="keep"
    )
    ten = sdk.crons.create(
        "agent", schedule="*/10 * * * *", input=QUESTION, on_run_completed="keep"
    )
    api = sdk.http
    triggered = api.post(f"/runs/crons/{every_minute['cron_id']}/trigger", json={})
    assert triggered["status"] in ("pending", "running", "success")
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 10)
    window = {"start": (end - dt.timedelta(hours=1)).isoformat(), "end": end.isoformat()}
    first = api.post(f"/runs/crons/{ten['cron_id']}/backfill", json=window)
    assert first["instants"] == first["fired"] == 6
    again = api.post(f"/runs/crons/{ten['cron_id']}/backfill", json=window)
    assert again["fired"] == 0 and again["already_fired"] == 6

    beat = start_beat(tmp_path)
    try:
        boundary = dt.datetime.fromisoformat(every_minute["next_run_date"])
        wait_until(
            lambda: Run.objects.filter(
                cron_id=every_minute["cron_id"], scheduled_at=boundary, status="success"
            ).exists(),
            timeout=120,
        )
        # Stop the schedule (a run prepared ahead for the next minute is withdrawn).
        sdk.crons.update(every_minute["cron_id"], enabled=False)
        sdk.crons.update(ten["cron_id"], enabled=False)
    finally:
        beat.stop()
    wait_until(lambda: not Run.objects.filter(status__in=("pending", "running")).exists(), 120)

    samples = scrape(live_server)
    rows = {
        (r["status"], r["kind"]): r["n"]
        for r in Tick.objects.values("status", "kind").annotate(n=Count("id"))
    }
    withdrawn = samples[("cronsvc_ticks_withdrawn_total", ())]
    for outcome in ("fired", "skipped", "rejected"):
        for kind in ("scheduled", "manual", "backfill"):
            counted = samples[("cronsvc_ticks_total", (("kind", kind), ("outcome", outcome)))]
            expected = rows.get((outcome, kind), 0)
            if (outcome, kind) == ("fired", "scheduled"):
                expected += withdrawn
            assert counted == expected, (outcome, kind)
    assert rows[("fired", "manual")] == 1
    assert rows[("fired", "backfill")] == 6
    assert rows[("fired", "scheduled")] >= 1
    for status in Run.FINISHED:
        assert samples[("cronsvc_runs_total", (("status", status),))] == (
            Run.objects.filter(status=status).count()
        ), status
    assert samples[("cronsvc_runs_total", (("status", "success"),))] >= 8
    # The fire lag: the scheduled runs (not the trigger's, not the backfill's).
    # (The */10 cron may have had a scheduled instant too: 17:20 is both.)
    scheduled = Run.objects.filter(
        pk__in=Tick.objects.filter(kind="scheduled", status="fired").values("run_id"),
        started_at__isnull=False,
    )
    assert samples[("cronsvc_fire_lag_seconds_count", ())] == scheduled.count()
    lag = sum((r.started_at - r.scheduled_at).total_seconds() for r in scheduled)
    assert samples[("cronsvc_fire_lag_seconds_sum", ())] == pytest.approx(lag, abs=0.01)
    assert samples[("cronsvc_runs_pending", ())] == 0
    assert samples[("cronsvc_crons", (("enabled", "false"),))] == 2
    assert samples[("cronsvc_scheduler_lease_epoch", ())] >= 1
