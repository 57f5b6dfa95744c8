"""GET /metrics at scale: how long a scrape takes with a million crons.

    .venv/bin/python bench/metrics_scrape.py                 # 1,000,000 crons
    .venv/bin/python bench/metrics_scrape.py --crons 100000 --pending 10000

Loads the crons with the COPY import (crons_bulk_create, 5% disabled; the
crons gauge's triggers count them), PENDING pending runs and RUNNING running
ones (SQL, on threads of their own), and counter rows as a long-lived
deployment has them (every series on every shard), then ANALYZE and VACUUM as
autovacuum would. Then it times scrapes: cronsvc.metrics.prometheus_text()
alone, and `GET /metrics` through Django's test client (the view, auth and
rendering included), and for comparison the COUNT(*) of enabled crons a
scrape does not do. Needs PostgreSQL (the database cronsvc_bench_metrics is
dropped and created).
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchenv import BenchDatabase

DB = BenchDatabase("cronsvc_bench_metrics", redis_db=14, queue="cronsvc-bench-metrics")


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(
        f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   "
        f"max {ms[-1]:7.2f} ms   (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crons", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=20_000)
    parser.add_argument("--running", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()

    DB.recreate()
    from django.db import connection
    from django.test import Client

    from crons.services import crons_bulk_create
    from cronsvc import metrics
    from cronsvc.selectors import assistant_get_or_404

    agent = assistant_get_or_404("agent")
    started = time.perf_counter()
    for start in range(0, args.crons, 100_000):
        size = min(100_000, args.crons - start)
        specs = [
            {"schedule": f"{i % 60} * * * *", "enabled": i % 20 != 0}
            for i in range(start, start + size)
        ]
        crons_bulk_create(assistant=agent, specs=specs)
    print(f"loaded {args.crons:,} crons in {time.perf_counter() - started:.1f} s (COPY)")

    with connection.cursor() as cursor:
        for status, n in (("pending", args.pending), ("running", args.running)):
            cursor.execute(
                """
                WITH t AS (
                    INSERT INTO threads_thread
                        (thread_id, metadata, status, "values", graph_id, created_at, updated_at)
                    SELECT gen_random_uuid(), '{}', 'busy', NULL, 'agent', now(), now()
                    FROM generate_series(1, %(n)s) RETURNING thread_id
                )
                INSERT INTO runs_run
                    (run_id, thread_id, assistant_id, status, metadata, kwargs,
                     multitask_strategy, streamed, attempts, webhook_attempts,
                     created_at, updated_at)
                SELECT gen_random_uuid(), thread_id, %(assistant)s, %(status)s, '{}', '{}',
                       'enqueue', false, 0, 0, now(), now()
                FROM t
                """,
                {"n": n, "status": status, "assistant": str(agent.assistant_id)},
            )
        # Every series on every shard, as after a long run with many connections.
        rows = []
        for outcome in metrics.TICK_OUTCOMES:
            for kind in metrics.TICK_KINDS:
                rows.append((metrics.TICKS, metrics._labels(outcome=outcome, kind=kind)))
        rows += [(metrics.RUNS, metrics._labels(status=s)) for s in metrics.RUN_STATUSES]
        rows += [(metrics.WEBHOOKS, metrics._labels(outcome=o)) for o in metrics.WEBHOOK_OUTCOMES]
        rows += [(metrics.LAG_BUCKET, f"le={b}") for b in (*metrics.LAG_BUCKETS, "+Inf")]
        rows += [(metrics.LAG_SUM_MS, ""), (metrics.TICKS_WITHDRAWN, "")]
        for name, labels in rows:
            for shard in range(metrics.SHARDS):
                cursor.execute(
                    "INSERT INTO cronsvc_metriccounter (name, labels, shard, value) "
                    "VALUES (%s, %s, %s, 1000) ON CONFLICT DO NOTHING",
                    [name, labels, shard],
                )
        cursor.execute("SELECT count(*) FROM cronsvc_metriccounter")
        counter_rows = cursor.fetchone()[0]
    connection.close()
    import psycopg

    with psycopg.connect(_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(
        f"{args.pending:,} pending and {args.running:,} running runs, "
        f"{counter_rows:,} counter rows; VACUUM ANALYZE done"
    )

    def count_enabled():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM crons_cron WHERE enabled")
            return cursor.fetchone()[0]

    text = metrics.prometheus_text()  # warm the connection and the caches
    assert b"cronsvc_crons" in text
    summary("cronsvc.metrics.prometheus_text()", timed(metrics.prometheus_text, args.scrapes))
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()

    def http_scrape():
        response = client.get("/metrics")
        assert response.status_code == 200

    http_scrape()
    summary("GET /metrics (test client, view included)", timed(http_scrape, args.scrapes))
    summary(
        "GET /metrics?format=json",
        timed(lambda: client.get("/metrics?format=json"), args.scrapes),
    )
    summary("for comparison: COUNT(*) of enabled crons", timed(count_enabled, 10))
    for line in text.decode().splitlines():
        if line.startswith(("cronsvc_crons", "cronsvc_runs_pending", "cronsvc_runs_running")):
            print("  " + line)


def _url() -> str:
    import os

    return os.environ["DATABASE_URL"]


if __name__ == "__main__":
    main()
