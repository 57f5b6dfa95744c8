"""GET /metrics (cronsvc.metrics): counters kept as rows in the transactions
that write what they count, checked against the database after ticks fired
with the settable clock (crons.ticking.fire_due) and runs finished through
runs.lifecycle; unchanged when retention prunes those rows."""

import datetime as dt

import pytest
from django.db.models import Count
from prometheus_client.parser import text_string_to_metric_families

from crons import dispatch, lease, ticking
from crons.models import Cron, Tick
from crons.services import cron_backfill, cron_delete, cron_trigger, cron_update
from cronsvc import metrics
from cronsvc.models import MetricCounter
from runs import lifecycle, retention
from runs.models import Run
from runs.webhooks import delivery
from tests.factories import make_cron, z
from threads.services import thread_create

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def scrape(client, **headers) -> dict:
    """{(sample name, sorted labels): value} of a Prometheus scrape."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def ticks(samples, outcome, kind) -> float:
    return samples[("cronsvc_ticks_total", (("kind", kind), ("outcome", outcome)))]


def runs(samples, status) -> float:
    return samples[("cronsvc_runs_total", (("status", status),))]


def tick(now):
    report = ticking.fire_due(now=now)
    ticking.advance()
    return report


def tick_rows() -> dict:
    return {
        (row["status"], row["kind"]): row["n"]
        for row in Tick.objects.values("status", "kind").annotate(n=Count("id"))
    }


def finish_all(status_for) -> list[Run]:
    """Claim every claimable run and finish it with status_for(run)."""
    finished = []
    while (run := lifecycle.run_claim_ready()) is not None:
        assert lifecycle.run_finish(run_id=run.pk, status=status_for(run), attempt=run.attempts)
        finished.append(run)
    return finished


def test_counts_match_the_database_and_survive_retention(client, settings, parked_runs):
    settings.CRONSVC_MISSED_TICK_GRACE = 120
    settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD = 1
    start = z("2026-05-01T00:00:00Z")
    every_minute = [make_cron("* * * * *", start=start) for _ in range(3)]
    late = make_cron("* * * * *", start=start)
    thread = thread_create()
    rejecting = make_cron(
        "* * * * *", start=start, thread=thread, payload={"multitask_strategy": "reject"}
    )
    # Beat down until 00:03:30: each cron's ticks 00:01 and 00:02 are skipped
    # and 00:03 fires, one cron at a time (fire_tick, record_tick).
    tick(start + dt.timedelta(minutes=3, seconds=30))
    # On time: the stateless crons fire in a batch (fire_batch); the thread cron
    # is rejected, its thread busy.
    tick(start + dt.timedelta(minutes=4))
    cron_trigger(cron=every_minute[0])
    cron_backfill(
        cron=late,
        start=start + dt.timedelta(minutes=1),
        end=start + dt.timedelta(minutes=3),
        now=start + dt.timedelta(minutes=5),
    )

    rows = tick_rows()
    assert rows[("fired", "scheduled")] == 5 + 4
    samples = scrape(client)
    # Every recorded outcome is counted; the backfill turned two skipped ticks
    # into fired ones, so `skipped` counts them still (it happened).
    refired = Tick.objects.filter(kind="backfill", status="fired").count()
    assert refired == 2
    assert ticks(samples, "fired", "scheduled") == rows[("fired", "scheduled")]
    assert ticks(samples, "rejected", "scheduled") == rows[("rejected", "scheduled")] == 1
    assert ticks(samples, "skipped", "scheduled") == rows[("skipped", "scheduled")] + refired
    assert ticks(samples, "fired", "manual") == rows[("fired", "manual")] == 1
    assert ticks(samples, "fired", "backfill") == refired
    assert ticks(samples, "rejected", "manual") == 0

    # Runs finish: success, error, and a pending one cancelled (interrupted).
    leftover = Run.objects.filter(status="pending").order_by("created_at").first()
    lifecycle.run_cancel(run=leftover)
    done = finish_all(lambda run: "error" if run.cron_id == every_minute[1].cron_id else "success")
    assert done
    samples = scrape(client)
    for status in Run.FINISHED:
        assert runs(samples, status) == Run.objects.filter(status=status).count(), status
    assert runs(samples, "interrupted") == 1
    # The fire lag: one observation per claimed run of a scheduled instant.
    claimed = [r for r in done if r.scheduled_at is not None]
    backfilled = set(Tick.objects.filter(kind="backfill").values_list("cron_id", "scheduled_at"))
    lagged = [r for r in claimed if (r.cron_id, r.scheduled_at) not in backfilled]
    assert samples[("cronsvc_fire_lag_seconds_count", ())] == len(lagged) > 0
    # The instants are in May; the runs started now: months late, all in +Inf.
    assert samples[("cronsvc_fire_lag_seconds_bucket", (("le", "3600.0"),))] == 0
    assert samples[("cronsvc_fire_lag_seconds_bucket", (("le", "+Inf"),))] == len(lagged)
    assert samples[("cronsvc_fire_lag_seconds_sum", ())] > 3600 * len(lagged)
    assert samples[("cronsvc_runs_pending", ())] == Run.objects.filter(status="pending").count()
    assert samples[("cronsvc_crons", (("enabled", "true"),))] == Cron.objects.count() == 5
    del rejecting  # fired once, then rejected

    # Retention deletes every finished run and every tick: the counters stay.
    before = {k: v for k, v in samples.items() if k[0].endswith("_total")}
    retention.prune_runs(older_than=dt.timedelta(seconds=-60), batch=2, max_batches=100)
    retention.prune_ticks(older_than=dt.timedelta(seconds=-60), batch=2, max_batches=100)
    assert not Tick.objects.exists()
    assert not Run.objects.filter(status__in=Run.FINISHED).exists()
    after = scrape(client)
    assert {k: v for k, v in after.items() if k[0].endswith("_total")} == before
    assert after[("cronsvc_fire_lag_seconds_count", ())] == len(lagged)


def test_fire_lag_of_an_on_time_tick_lands_in_a_small_bucket(client, parked_runs):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    cron = make_cron("* * * * * *", start=now - dt.timedelta(seconds=2))  # every second
    instant = Cron.objects.get(pk=cron.pk).next_run_date
    assert ticking.fire_due(now=instant).fired == 1
    run = lifecycle.run_claim_ready()
    assert run is not None and run.cron_id == cron.cron_id
    lag = (run.started_at - instant).total_seconds()
    samples = scrape(client)
    assert samples[("cronsvc_fire_lag_seconds_count", ())] == 1
    assert samples[("cronsvc_fire_lag_seconds_sum", ())] == pytest.approx(lag, abs=0.002)
    smallest = next(b for b in metrics.LAG_BUCKETS if lag <= b)
    assert samples[("cronsvc_fire_lag_seconds_bucket", (("le", str(smallest)),))] == 1
    assert samples[("cronsvc_ticks_total", (("kind", "scheduled"), ("outcome", "fired")))] == 1


def test_withdrawn_ticks_are_counted_apart(client):
    start = dt.datetime.now(UTC).replace(microsecond=0)
    cron = make_cron("* * * * * */30", start=start)
    ticking.fire_due(now=start, lookahead=40)  # prepared ahead
    ticking.advance()
    cron_update(cron=Cron.objects.get(pk=cron.pk), schedule="0 0 1 1 *")  # withdraws it
    samples = scrape(client)
    assert samples[("cronsvc_ticks_total", (("kind", "scheduled"), ("outcome", "fired")))] == 1
    assert samples[("cronsvc_ticks_withdrawn_total", ())] == 1
    assert not Tick.objects.exists()


def test_crons_gauge_follows_every_writer(client):
    from crons.services import crons_bulk_create
    from tests.factories import agent

    a = make_cron("* * * * *")
    make_cron("0 * * * *", enabled=False)
    crons_bulk_create(
        assistant=agent(),
        specs=[{"schedule": "*/5 * * * *"} for _ in range(7)]
        + [{"schedule": "0 0 * * *", "enabled": False}],
    )
    cron_update(cron=Cron.objects.get(pk=a.pk), enabled=False)
    cron_delete(cron=Cron.objects.filter(enabled=True).first())
    samples = scrape(client)
    for enabled in (True, False):
        label = (("enabled", str(enabled).lower()),)
        assert samples[("cronsvc_crons", label)] == Cron.objects.filter(enabled=enabled).count()
    assert samples[("cronsvc_crons", (("enabled", "true"),))] == 6


def test_lease_gauges(client):
    samples = scrape(client)
    assert samples[("cronsvc_scheduler_lease_epoch", ())] == 0
    assert samples[("cronsvc_scheduler_lease_held", ())] == 0
    now = dt.datetime.now(UTC)
    lease.lease_acquire(holder="a", now=now - dt.timedelta(seconds=3), ttl=60)
    samples = scrape(client)
    assert samples[("cronsvc_scheduler_lease_epoch", ())] == 1
    assert samples[("cronsvc_scheduler_lease_held", ())] == 1
    # ttl 60 but the age assumes CRONSVC_BEAT_LEASE_SECONDS: use the default ttl.
    lease.lease_release(holder="a")
    lease.lease_acquire(holder="b", now=now - dt.timedelta(seconds=3))
    samples = scrape(client)
    assert samples[("cronsvc_scheduler_lease_epoch", ())] == 2
    assert samples[("cronsvc_scheduler_lease_age_seconds", ())] == pytest.approx(3, abs=1)


def test_webhook_outcomes(client, monkeypatch, parked_runs):
    import httpx

    from tests.factories import make_run

    thread = thread_create()
    run = make_run(thread, kwargs={"input": {}, "webhook": "https://hooks.example.com/x"})
    claimed = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert lifecycle.run_finish(run_id=run.pk, status="success", attempt=claimed.attempts)
    answers = iter([httpx.Response(503), httpx.Response(200)])
    monkeypatch.setattr(delivery.transport, "send", lambda url, body: next(answers))
    assert delivery.deliver(run.pk, final=False).retry
    assert delivery.deliver(run.pk, final=False).status == "delivered"
    samples = scrape(client)
    outcome = "cronsvc_webhook_deliveries_total"
    assert samples[(outcome, (("outcome", "retry"),))] == 1
    assert samples[(outcome, (("outcome", "delivered"),))] == 1
    assert samples[(outcome, (("outcome", "failed"),))] == 0


def test_json_format(client, parked_runs):
    make_cron("* * * * *", start=z("2026-05-01T00:00:00Z"))
    tick(z("2026-05-01T00:01:00Z"))
    response = client.get("/metrics?format=json")
    assert response.status_code == 200
    body = response.json()
    ticks_family = body["cronsvc_ticks"]
    assert ticks_family["type"] == "counter"
    fired = [
        s
        for s in ticks_family["samples"]
        if s["name"] == "cronsvc_ticks_total"
        and s["labels"] == {"outcome": "fired", "kind": "scheduled"}
    ]
    assert fired[0]["value"] == 1
    assert body["cronsvc_fire_lag_seconds"]["type"] == "histogram"
    assert body["cronsvc_runs_pending"]["samples"][0]["value"] == 1
    assert client.get("/metrics?format=xml").status_code == 422


def test_needs_a_key_unless_public(client, settings):
    settings.CRONSVC_API_KEYS = ["k1"]
    assert client.get("/metrics").status_code in (401, 403)
    assert client.get("/metrics", headers={"x-api-key": "wrong"}).status_code in (401, 403)
    assert client.get("/metrics", headers={"x-api-key": "k1"}).status_code == 200
    settings.CRONSVC_METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics?format=json").status_code == 200


def test_counter_rows_are_sharded_and_summed():
    from django.db import connection

    metrics.ticks_counted("fired", "scheduled", 3)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    # Another connection's shard (this one's is its backend pid modulo SHARDS).
    other = (pid + 1) % metrics.SHARDS
    MetricCounter.objects.create(
        name=metrics.TICKS, labels="kind=scheduled,outcome=fired", shard=other, value=4
    )
    metrics.ticks_counted("fired", "scheduled", 2)
    totals = metrics.counter_totals()
    assert totals[(metrics.TICKS, "kind=scheduled,outcome=fired")] == 9
    assert MetricCounter.objects.filter(name=metrics.TICKS).count() <= 2


def test_a_rolled_back_tick_is_not_counted():
    from django.db import transaction

    start = z("2026-05-01T00:00:00Z")
    cron = make_cron("* * * * *", start=start)

    def fire_then_fail():
        with transaction.atomic():
            dispatch.fire_tick(
                Cron.objects.select_related("assistant", "thread").get(pk=cron.pk),
                start + dt.timedelta(minutes=1),
            )
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        fire_then_fail()
    assert not Tick.objects.exists()
    assert metrics.counter_totals().get((metrics.TICKS, "kind=scheduled,outcome=fired"), 0) == 0


def test_custom_auth_needs_an_authenticated_user_unless_public(client, settings):
    from langgraph_sdk import Auth

    from tests.auth_recipes import authenticate_with_tokens

    auth = Auth()
    authenticate_with_tokens(auth)
    settings.CRONSVC_AUTH = auth
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer token-ada"})
    assert ok.status_code == 200
    assert b"cronsvc_ticks_total" in ok.content
    settings.CRONSVC_METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200
