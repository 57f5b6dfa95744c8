"""`GET /metrics`: what the scheduler did, as counters that survive retention.

Counters are rows (cronsvc.models.MetricCounter), incremented by one call at
each write site, inside the transaction that writes what they count:

- `ticks_counted(outcome, kind, n)` — a tick recorded fired, skipped or
  rejected (crons.dispatch: the batch statement, the ORM batch, `fire_tick`,
  `record_tick`, and `refire_tick` when a backfill fires or rejects an
  instant recorded earlier); `ticks_withdrawn(n)` — ticks prepared ahead and
  withdrawn before their instant (a rescheduled, disabled or deleted cron).
- `runs_finished(status)` — a run reached a final status (runs.lifecycle:
  `run_finish_locked` and the PostgreSQL finish statement).
- `run_started(run)` — a cron run's first claim: the fire lag, from its
  instant (`not_before` when it has one) to its start, into the histogram's
  bucket rows. Runs of backfilled instants and manual triggers are left out
  (their lag is not the scheduler's).
- `webhook_delivered(outcome)` — a webhook attempt's outcome
  (runs.webhooks.delivery).

So a counter is right whatever process wrote it (workers serve no HTTP),
rolls back with its transaction, and does not go down when retention prunes
the ticks and runs it counted. Each series is spread over SHARDS rows: on
PostgreSQL the shard is the connection's backend pid modulo SHARDS, so
concurrent transactions (on different connections) seldom share a row; one
upsert (`ON CONFLICT ... DO UPDATE SET value = value + n`, on SQLite too)
per call, its rows in key order, made last in its transaction where the
writer allows (a counter row is then the last lock a short transaction takes).
A transaction that counts and then waits on other locks (beat's batch) can
still meet a short one on the same shard row in a deadlock PostgreSQL breaks;
that needs two connections on one shard and the same thread, and is rare.

The crons gauge (`cronsvc_crons{enabled}`) is kept the same way by triggers
on crons_cron on PostgreSQL (every writer, COPY and cascades included;
cronsvc/migrations/0008_metrics.py; a superuser's import copies with the
triggers off and adds the same counts itself, `crons_imported`); SQLite
counts at scrape. The other gauges are read at scrape with indexed queries. A scrape reads only the
counter rows (a few hundred at most), two index counts of active runs and
the lease row: 3.5 ms (median; p95 4.3 ms) through `GET /metrics` at a
million crons and 20,000 pending runs, where a COUNT(*) of the enabled crons
alone takes 90 ms (bench/metrics_scrape.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from crons.lease import LEASE_NAME
from crons.models import Cron, SchedulerLease, Tick
from cronsvc.dbclock import db_now
from cronsvc.models import MetricCounter

SHARDS = 16

TICKS = "ticks"
TICKS_WITHDRAWN = "ticks_withdrawn"
RUNS = "runs"
LAG_BUCKET = "fire_lag_bucket"
LAG_SUM_MS = "fire_lag_sum_ms"
WEBHOOKS = "webhook_deliveries"
CRONS = "crons"  # PostgreSQL: kept by the triggers of migration 0008

# Fire lag buckets, seconds (upper bounds; +Inf is implied).
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

TICK_OUTCOMES = ("fired", "skipped", "rejected")
TICK_KINDS = ("scheduled", "manual", "backfill")
RUN_STATUSES = ("success", "error", "timeout", "interrupted")
WEBHOOK_OUTCOMES = ("delivered", "failed", "refused", "retry")

_TABLE = MetricCounter._meta.db_table


# --------------------------------------------------------------- counting


def _labels(**labels: str) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _add(increments: Iterable[tuple[str, str, int]]) -> None:
    """Add each (name, labels, n) to its series, in the caller's transaction."""
    rows = sorted((name, labels, n) for name, labels, n in increments if n)
    if not rows:
        return
    shard = f"mod(pg_backend_pid(), {SHARDS})" if connection.vendor == "postgresql" else "0"
    values = ", ".join(f"(%s, %s, {shard}, %s)" for _ in rows)
    sql = (
        f"INSERT INTO {_TABLE} (name, labels, shard, value) VALUES {values} "  # noqa: S608
        f"ON CONFLICT (name, labels, shard) DO UPDATE SET value = {_TABLE}.value + excluded.value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [v for row in rows for v in row])


def crons_imported(*, enabled: int, disabled: int) -> None:
    """Count crons inserted with crons_crons' triggers off (an import's COPY
    with session_replication_role = replica, crons.services._crons_copy): the
    rows the insert trigger of migration 0008 would have added, the same way
    (this connection's shard, labels in order)."""
    _add([(CRONS, "enabled=true", enabled), (CRONS, "enabled=false", disabled)])


def ticks_counted(outcome: str, kind: str, n: int = 1) -> None:
    """`n` ticks of `kind` were recorded with `outcome` (fired, skipped, rejected)."""
    _add([(TICKS, _labels(outcome=str(outcome), kind=str(kind)), n)])


def ticks_withdrawn(n: int) -> None:
    """`n` ticks prepared ahead were withdrawn before their instant."""
    _add([(TICKS_WITHDRAWN, "", n)])


def runs_finished(status: str, n: int = 1) -> None:
    """`n` runs reached the final `status`."""
    _add([(RUNS, _labels(status=str(status)), n)])


def webhook_delivered(outcome: str) -> None:
    """A webhook attempt ended `outcome`: delivered, failed, refused, or retry
    (failed, to be attempted again)."""
    _add([(WEBHOOKS, _labels(outcome=str(outcome)), 1)])


def _bucket(seconds: float) -> str:
    for bound in LAG_BUCKETS:
        if seconds <= bound:
            return f"le={bound}"
    return "le=+Inf"


def fire_lag_observed(seconds: float) -> None:
    seconds = max(seconds, 0.0)
    _add([(LAG_BUCKET, _bucket(seconds), 1), (LAG_SUM_MS, "", round(seconds * 1000))])


def runs_finished_sql(finished: str, status: str, *after: str) -> str:
    """`runs_finished(status)` as a data-modifying CTE body (PostgreSQL): one
    per row of the CTE `finished`; run after the CTEs `after` (each read to
    its end first), so that the counter row is the statement's last lock."""
    if status not in RUN_STATUSES:
        raise ValueError(status)
    waits = "".join(f", (SELECT count(*) FROM {n}) {n}_done" for n in after)  # noqa: S608
    return f"""
INSERT INTO {_TABLE} (name, labels, shard, value)
SELECT '{RUNS}', '{_labels(status=status)}', mod(pg_backend_pid(), {SHARDS}), count(*)
FROM {finished}{waits}
HAVING count(*) > 0
ON CONFLICT (name, labels, shard) DO UPDATE SET value = {_TABLE}.value + excluded.value
"""  # noqa: S608 - constants only


def run_started_sql(claimed: str) -> str:
    """`run_started` as a data-modifying CTE body (PostgreSQL) for the runs
    RETURNING'd by the CTE `claimed` (their started_at, not_before,
    scheduled_at, cron_id, attempts): the claim statement counts its fire lag
    itself, its counter rows the last it locks. Same rows, labels and
    rounding (to the millisecond) as `run_started`."""
    bucket = " ".join(f"WHEN lag.s <= {bound!r} THEN 'le={bound}'" for bound in LAG_BUCKETS)
    return f"""
INSERT INTO {_TABLE} (name, labels, shard, value)
SELECT v.name, v.labels, mod(pg_backend_pid(), {SHARDS}), v.n
FROM (
    SELECT GREATEST(EXTRACT(EPOCH FROM c.started_at - COALESCE(c.not_before, c.scheduled_at)),
                    0)::float8 AS s
    FROM {claimed} c
    WHERE c.cron_id IS NOT NULL AND c.scheduled_at IS NOT NULL AND c.attempts = 1
      AND c.started_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM crons_tick k WHERE k.cron_id = c.cron_id
                      AND k.scheduled_at = c.scheduled_at AND k.kind = 'backfill')
) lag, LATERAL (VALUES
    ('{LAG_BUCKET}', CASE {bucket} ELSE 'le=+Inf' END, 1::bigint),
    ('{LAG_SUM_MS}', '', round(lag.s * 1000)::bigint)
) v(name, labels, n)
WHERE v.n <> 0
ORDER BY v.name, v.labels
ON CONFLICT (name, labels, shard) DO UPDATE SET value = {_TABLE}.value + excluded.value
"""  # noqa: S608 - constants only


def run_started(run: Any) -> None:
    """A run was claimed: the fire lag of a cron run's first attempt at a
    scheduled instant (a backfilled instant's or a trigger's lag is not the
    scheduler's). Reads the run's `cron_id`, `scheduled_at`, `started_at`,
    `attempts`, and `not_before` when it has one."""
    if run.cron_id is None or run.scheduled_at is None or run.attempts != 1:
        return
    if run.started_at is None:
        return
    due: datetime = run.not_before or run.scheduled_at  # a jittered tick: its not_before
    backfilled = Tick.objects.filter(
        cron_id=run.cron_id, scheduled_at=run.scheduled_at, kind=Tick.Kind.BACKFILL
    ).exists()
    if not backfilled:
        fire_lag_observed((run.started_at - due).total_seconds())


# ---------------------------------------------------------------- scraping


def _parse(labels: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in labels.split(",")) if labels else {}


def counter_totals() -> dict[tuple[str, str], int]:
    """(name, labels) -> the series' value, its shards summed."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name, labels, SUM(value) FROM {_TABLE} GROUP BY name, labels")  # noqa: S608
        return {(name, labels): int(total) for name, labels, total in cursor.fetchall()}


def crons_total(enabled: bool | None = None) -> int | None:
    """How many crons there are (only the enabled or the disabled ones, if
    asked), from the counter rows crons_cron's triggers keep on PostgreSQL:
    a sum over at most 2 x SHARDS rows, in the same snapshot a COUNT(*)
    would read, so exact, where a COUNT(*) reads every row (or index entry).
    None on SQLite, which has no such triggers."""
    query = crons_total_sql(enabled)
    if query is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(*query)
        (total,) = cursor.fetchone()
    return int(total)


def crons_total_sql(enabled: bool | None = None) -> tuple[str, list] | None:
    """`crons_total`'s statement and parameters (one row, one column), for a
    caller that sends it with another; None on SQLite."""
    if connection.vendor != "postgresql":
        return None
    labels = (
        ["enabled=true", "enabled=false"] if enabled is None else [f"enabled={enabled}".lower()]
    )
    # Labels as scalars, not an array: adapting a list costs more than the query.
    sql = (
        f"SELECT COALESCE(SUM(value), 0) FROM {_TABLE} "  # noqa: S608
        f"WHERE name = %s AND labels IN ({', '.join(['%s'] * len(labels))})"
    )
    return sql, [CRONS, *labels]


def _crons_by_enabled(totals: dict[tuple[str, str], int]) -> dict[str, int]:
    if connection.vendor == "postgresql":
        return {e: totals.get((CRONS, f"enabled={e}"), 0) for e in ("true", "false")}
    counted = dict(
        Cron.objects.order_by().values("enabled").annotate(n=Count("*")).values_list("enabled", "n")
    )
    return {"true": counted.get(True, 0), "false": counted.get(False, 0)}


_ACTIVE_RUNS_SQL = (
    "SELECT (SELECT count(*) FROM runs_run WHERE status = 'pending'),"
    " (SELECT count(*) FROM runs_run WHERE status = 'running')"
)


class _Scrape(Collector):
    def collect(self) -> Iterator[Metric]:
        totals = counter_totals()

        ticks = CounterMetricFamily(
            "cronsvc_ticks",
            "Ticks recorded, by outcome and kind (a backfill that fires an instant "
            "recorded skipped counts it again, as fired).",
            labels=["outcome", "kind"],
        )
        for outcome in TICK_OUTCOMES:
            for kind in TICK_KINDS:
                value = totals.get((TICKS, _labels(outcome=outcome, kind=kind)), 0)
                ticks.add_metric([outcome, kind], value)
        yield ticks
        yield CounterMetricFamily(
            "cronsvc_ticks_withdrawn",
            "Ticks prepared ahead and withdrawn before their instant (cron rescheduled, "
            "disabled or deleted).",
            value=totals.get((TICKS_WITHDRAWN, ""), 0),
        )

        runs = CounterMetricFamily(
            "cronsvc_runs", "Runs that reached a final status.", labels=["status"]
        )
        for status in RUN_STATUSES:
            runs.add_metric([status], totals.get((RUNS, _labels(status=status)), 0))
        yield runs

        cumulative, buckets = 0, []
        for bound in (*LAG_BUCKETS, "+Inf"):
            cumulative += totals.get((LAG_BUCKET, f"le={bound}"), 0)
            buckets.append((str(bound), cumulative))
        yield HistogramMetricFamily(
            "cronsvc_fire_lag_seconds",
            "Seconds from a scheduled tick's instant (its not_before) to its run's start.",
            buckets=buckets,
            sum_value=totals.get((LAG_SUM_MS, ""), 0) / 1000,
        )

        webhooks = CounterMetricFamily(
            "cronsvc_webhook_deliveries",
            "Webhook delivery attempts, by outcome (retry: failed, attempted again later).",
            labels=["outcome"],
        )
        for outcome in WEBHOOK_OUTCOMES:
            webhooks.add_metric([outcome], totals.get((WEBHOOKS, _labels(outcome=outcome)), 0))
        yield webhooks

        crons = GaugeMetricFamily("cronsvc_crons", "Crons, by enabled.", labels=["enabled"])
        for enabled, value in _crons_by_enabled(totals).items():
            crons.add_metric([enabled], value)
        yield crons

        with connection.cursor() as cursor:
            cursor.execute(_ACTIVE_RUNS_SQL)
            pending, running = cursor.fetchone()
        lease = (
            SchedulerLease.objects.filter(name=LEASE_NAME)
            .values_list("holder", "epoch", "expires_at")
            .first()
        )
        yield GaugeMetricFamily(
            "cronsvc_runs_pending",
            "Runs waiting to start (runs prepared ahead of their instant included).",
            value=pending,
        )
        yield GaugeMetricFamily("cronsvc_runs_running", "Runs executing.", value=running)

        epoch, held, age = 0, 0, float("nan")
        if lease is not None:
            holder, epoch, expires_at = lease
            now = db_now()
            held = int(bool(holder) and expires_at > now)
            renewed = expires_at.timestamp() - settings.CRONSVC_BEAT_LEASE_SECONDS
            age = max(now.timestamp() - renewed, 0.0)
        yield GaugeMetricFamily(
            "cronsvc_scheduler_lease_epoch",
            "The scheduler lease's epoch (goes up by one each time another beat takes it).",
            value=epoch,
        )
        yield GaugeMetricFamily(
            "cronsvc_scheduler_lease_held",
            "1 while a beat holds the scheduler lease unexpired, else 0.",
            value=held,
        )
        yield GaugeMetricFamily(
            "cronsvc_scheduler_lease_age_seconds",
            "Seconds since the lease's holder last took or renewed it (beat renews it "
            "every tick; growing means a stalled beat). NaN: never taken.",
            value=age,
        )


def families() -> list[Metric]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return list(registry.collect())


def prometheus_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return generate_latest(registry)


def _number(value: float) -> float | int | None:
    if value != value:  # NaN has no JSON form
        return None
    return int(value) if float(value).is_integer() else value


def as_json() -> dict[str, Any]:
    """The families as JSON: {name: {type, help, samples: [{name, labels, value}]}}."""
    out: dict[str, Any] = {}
    for family in families():
        out[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": _number(s.value)}
                for s in family.samples
            ],
        }
    return json.loads(json.dumps(out))
