"""The cron import at scale: N crons through crons_bulk_create on PostgreSQL.

    scripts/bench.sh import                      # 1,000,000 crons, once
    scripts/bench.sh import --crons 100000 --repeat 3
    scripts/bench.sh import --row-triggers      # as a role that is not a superuser

Each run drops and creates the database cronsvc_bench_import, migrates, then
imports N crons with the beat benchmark's schedule mix (bench/beat_scale.py:
half fixed hours, half hour lists, 60 minutes x 24 hours; 5% of them
disabled) in chunks of --chunk (100,000: bounded memory, one transaction
each), as the other benchmarks load theirs, then ANALYZE as autovacuum would.
It prints the total, rows/s and where the time went:

- python: validating the specs and computing first fire times (_imported),
- mirrors: the django-celery-beat rows (crontab lookups, ids, COPY of the
  PeriodicTask mirrors, their index entries),
- crons COPY: the cron rows and their index entries (and formatting their
  lines, which overlaps the server's work), the counters aside,
- counters: the crons counter (the statement trigger, timed through
  pg_stat_xact_user_functions with track_functions = 'pl'; or, when the COPY
  runs without triggers, its upsert),
- FK checks: the bulk locks of the referenced rows when the COPYs run
  without row triggers (a superuser's import: session_replication_role =
  replica); with row triggers (--row-triggers, or a role that is not a
  superuser) the checks PostgreSQL queued run at commit and are in `commit`,
- commit: the commit (and those queued checks),
- ANALYZE.

With --repeat R it does it R times and prints each phase's median. The
counters are checked against COUNT(*) at the end of each run. The database is
dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from benchenv import BenchDatabase

DB = BenchDatabase("cronsvc_bench_import", redis_db=14, queue="cronsvc-bench-import")

PHASES = ("python", "mirrors", "crons COPY", "counters", "FK checks", "commit", "ANALYZE")


def specs_for(start: int, size: int, hour: int) -> list[dict]:
    """beat_scale.py's mix (nothing due for hours), 5% of the crons disabled."""
    specs = []
    for i in range(start, start + size):
        h = (hour + i % 5 - 2) % 24
        schedule = f"{i % 60} {h} * * *" if i % 2 else f"{i % 60} {h},{(h + 12) % 24} * * *"
        specs.append({"schedule": schedule, "enabled": i % 20 != 0})
    return specs


class Phases:
    """Wraps the import's steps (crons.services' names for them) to time them."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.installed = False

    def wrap(self, module, name: str, phase: str) -> None:
        inner = getattr(module, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started

        setattr(module, name, timed)


PHASES_TIMED = Phases()


def trigger_ms(cursor) -> float:
    cursor.execute(
        "SELECT coalesce(sum(total_time), 0) FROM pg_stat_xact_user_functions "
        "WHERE funcname = 'cronsvc_count_crons_inserted'"
    )
    return float(cursor.fetchone()[0])


def run_once(args) -> dict:
    DB.recreate()
    from django.db import connection, transaction

    from crons import services
    from crons.models import Cron
    from cronsvc.selectors import assistant_get_or_404

    phases = PHASES_TIMED
    if not phases.installed:  # once: the modules stay wrapped across runs
        phases.installed = True
        phases.wrap(services, "_imported", "python")
        phases.wrap(services, "_crons_copy", "crons COPY")  # the parts below are taken out
        phases.wrap(services, "mirrors_copy", "mirrors")
        phases.wrap(services, "_references_locked", "FK checks")
        phases.wrap(services.metrics, "crons_imported", "counters")
        if args.row_triggers:
            services.replica_copy_allowed = lambda *a: False
    phases.seconds = dict.fromkeys(PHASES, 0.0)
    agent = assistant_get_or_404("agent")
    hour = (datetime.now(UTC).hour + 6) % 24
    with connection.cursor() as cursor:
        cursor.execute("SET track_functions = 'pl'")
    total = 0.0
    for start in range(0, args.crons, args.chunk):
        size = min(args.chunk, args.crons - start)
        specs = specs_for(start, size, hour)
        started = time.perf_counter()
        atomic = transaction.atomic()
        atomic.__enter__()
        services.crons_bulk_create(assistant=agent, specs=specs)
        with connection.cursor() as cursor:
            phases.seconds["counters"] += trigger_ms(cursor) / 1000
        committing = time.perf_counter()
        atomic.__exit__(None, None, None)
        phases.seconds["commit"] += time.perf_counter() - committing
        total += time.perf_counter() - committing + (committing - started)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    phases.seconds["ANALYZE"] = time.perf_counter() - started
    total += phases.seconds["ANALYZE"]
    seconds = dict(phases.seconds)
    seconds["crons COPY"] -= seconds["mirrors"] + seconds["counters"] + seconds["FK checks"]
    seconds["total"] = total

    from cronsvc.metrics import crons_total

    counted = Cron.objects.count()
    assert counted == args.crons == crons_total(), (counted, crons_total())
    enabled = Cron.objects.filter(enabled=True).count()
    assert crons_total(enabled=True) == enabled, (crons_total(enabled=True), enabled)
    connection.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crons", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--row-triggers",
        action="store_true",
        help="copy with the per-row foreign-key triggers on, as a role that is not a superuser does",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    runs = []
    for n in range(args.repeat):
        seconds = run_once(args)
        runs.append(seconds)
        print(
            f"run {n + 1}: {args.crons:,} crons in {seconds['total']:.1f} s "
            f"({args.crons / seconds['total']:,.0f} rows/s); "
            + ", ".join(f"{p} {seconds[p]:.1f} s" for p in PHASES),
            flush=True,
        )
    median = {k: statistics.median(r[k] for r in runs) for k in (*PHASES, "total")}
    print(
        f"\n{args.crons:,} crons, chunks of {args.chunk:,}, "
        f"{'row triggers' if args.row_triggers else 'triggers off, references locked in bulk'}, "
        f"median of {len(runs)} run(s): "
        f"{median['total']:.1f} s, {args.crons / median['total']:,.0f} rows/s"
    )
    for phase in PHASES:
        share = 100 * median[phase] / median["total"]
        print(f"  {phase:<16} {median[phase]:7.2f} s  {share:5.1f} %")
    if not args.keep:
        import psycopg

        with psycopg.connect(DB.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB.name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
