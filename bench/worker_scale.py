"""Worker scaling: the same burst of cron runs completed by 1, 2 and 4 workers.

    scripts/bench.sh workers          # this file, with the venv and services set up
    .venv/bin/python bench/worker_scale.py --runs 2000 --workers 1,2,4 --concurrency 8

2,000 stateless crons of the `slow` graph (its node waits SLOW_GRAPH_SECONDS,
0.2 s, standing in for an LLM call) are due at the same instant. For each
worker count it starts that many worker processes (the deployment's command
line from cronsvc/topology.py, threads pool, fixed concurrency) and one beat
on loopback PostgreSQL and Redis, and prints: runs/s, the ratio to 1 worker,
CPU used by the workers, by beat, by the PostgreSQL and Redis servers and by
the whole machine (as % of one core, from the instant on), the delay from the
instant to the last run's start, and the peak PostgreSQL connections against
max_connections and the budget cronsvc.topology computes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchenv import ROOT, BenchDatabase

DB = BenchDatabase("cronsvc_bench_workers", redis_db=13, queue="cronsvc-bench-workers")
os.environ.setdefault("SLOW_GRAPH_SECONDS", "0.2")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores of this machine have been busy (not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS


def service_cpu_seconds() -> float:
    """CPU used so far by the PostgreSQL and Redis server processes."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres" or comm.startswith("redis-server"):
            total += cpu_seconds(int(proc.name))
    return total


def one_round(workers: int, runs: int, concurrency: int, bound: float) -> dict:
    from django.db import connection

    from crons.models import Cron
    from crons.services import crons_bulk_create
    from cronsvc.celery import app
    from cronsvc.selectors import assistant_get_or_404
    from cronsvc.topology import BEAT, WORKER, local_argv
    from runs.models import Run

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crons_tick, runs_run, threads_thread, crons_cron CASCADE")
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(os.environ["CELERY_QUEUE"])
    # A yearly schedule whose next fire is set to one shared instant: every
    # cron fires exactly once during the round.
    crons_bulk_create(
        assistant=assistant_get_or_404("slow"),
        specs=[
            {
                "schedule": "0 0 1 1 *",
                "payload": {"input": {"messages": []}},
                "on_run_completed": "keep",
            }
            for _ in range(runs)
        ],
    )
    instant = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    Cron.objects.update(next_run_date=instant)

    env = {
        **os.environ,
        "CELERY_WORKER_CONCURRENCY": str(concurrency),
        "CRONSVC_DATA_DIR": tempfile.mkdtemp(),
    }
    procs = [
        subprocess.Popen(
            local_argv(BEAT),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    for i in range(workers):
        procs.append(
            subprocess.Popen(
                [*local_argv(WORKER), "-n", f"bench{i}@%h", "-Q", os.environ["CELERY_QUEUE"]],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    cpu_before = None
    peak_connections = 0
    deadline = time.time() + (instant - datetime.now(UTC)).total_seconds() + bound
    try:
        while time.time() < deadline:
            if cpu_before is None and datetime.now(UTC) >= instant:
                # Measured from the instant on: start-up (imports, migrations
                # check) is not part of the burst.
                cpu_before = {p.pid: cpu_seconds(p.pid) for p in procs}
                services_before = service_cpu_seconds()
                machine_before = machine_busy_seconds()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DB.name]
                )
                peak_connections = max(peak_connections, cursor.fetchone()[0])
            done = Run.objects.filter(status__in=["success", "error"]).count()
            if done >= runs:
                break
            time.sleep(0.25)
        cpu = {p.pid: cpu_seconds(p.pid) - cpu_before[p.pid] for p in procs}
        services_cpu = service_cpu_seconds() - services_before
        machine_cpu = machine_busy_seconds() - machine_before
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    finished = Run.objects.filter(status="success")
    last_finish = max(finished.values_list("finished_at", flat=True), default=None)
    last_start = max(finished.values_list("started_at", flat=True), default=None)
    wall = (last_finish - instant).total_seconds() if last_finish else None
    return {
        "workers": workers,
        "done": finished.count(),
        "errors": Run.objects.filter(status="error").count(),
        "wall_s": wall,
        "runs_per_s": finished.count() / wall if wall else None,
        "worker_cpu_pct": 100 * sum(cpu[p.pid] for p in procs[1:]) / wall if wall else None,
        "beat_cpu_pct": 100 * cpu[procs[0].pid] / wall if wall else None,
        "services_cpu_pct": 100 * services_cpu / wall if wall else None,
        "machine_cpu_pct": 100 * machine_cpu / wall if wall else None,
        "last_start_delay_s": (last_start - instant).total_seconds() if last_start else None,
        "peak_connections": peak_connections,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bound", type=float, default=600)
    args = parser.parse_args()
    DB.recreate()
    from django.conf import settings
    from django.db import connection

    from cronsvc.topology import connection_budget

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    print(
        f"worker scaling — {args.runs:,} runs of `slow` ({os.environ['SLOW_GRAPH_SECONDS']} s each) "
        f"due at one instant; threads pool, concurrency {args.concurrency}; "
        f"{os.cpu_count()} cores; PostgreSQL max_connections {max_connections}"
    )
    results = [
        one_round(int(n), args.runs, args.concurrency, args.bound) for n in args.workers.split(",")
    ]
    base = results[0]["runs_per_s"]
    print(
        f"{'workers':>8}{'done':>7}{'runs/s':>9}{'× 1 worker':>12}{'worker CPU':>12}"
        f"{'beat CPU':>10}{'PG+Redis CPU':>14}{'machine CPU':>13}{'last start':>12}{'peak conns':>12}{'budget':>8}"
    )
    over = []
    for r in results:
        budget = connection_budget(
            workers=r["workers"],
            concurrency=args.concurrency,
            web_workers=0,
            web_threads=0,
            pool_size=settings.CRONSVC_CHECKPOINTER_POOL_SIZE,
        )
        print(
            f"{r['workers']:>8}{r['done']:>7}{r['runs_per_s'] or 0:>9.1f}"
            f"{(r['runs_per_s'] or 0) / base if base else 0:>11.2f}×{r['worker_cpu_pct'] or 0:>11.0f}%"
            f"{r['beat_cpu_pct'] or 0:>9.0f}%{r['services_cpu_pct'] or 0:>13.0f}%"
            f"{r['machine_cpu_pct'] or 0:>12.0f}%"
            f"{r['last_start_delay_s'] or 0:>11.1f}s"
            f"{r['peak_connections']:>12}{budget:>8}"
        )
        if r["peak_connections"] > min(budget, max_connections):
            over.append(r["workers"])
    ideal = args.concurrency / float(os.environ["SLOW_GRAPH_SECONDS"])
    print(
        f"ideal per worker (concurrency / wait) {ideal:.0f} runs/s; "
        f"errors: {sum(r['errors'] for r in results)}; peak connections over the budget "
        f"or max_connections: {', '.join(f'{n} workers' for n in over) or 'never'}"
    )


if __name__ == "__main__":
    main()
