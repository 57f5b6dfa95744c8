"""Beat at scale: cronsvc's scheduler against stock django-celery-beat, same rows.

    scripts/bench.sh                      # 10,000 and 100,000 crons
    scripts/bench.sh --sizes 10000 --due 2000

For each size it loads the crons (crons_bulk_create, which also writes each
cron's django-celery-beat PeriodicTask mirror — the rows stock beat reads),
then, in separate processes bounded in time, measures for cronsvc's
CronScheduler and for stock DatabaseScheduler:

- load: constructing the scheduler (stock reads every enabled PeriodicTask),
- memory: the process's peak RSS growth over that,
- idle tick: one tick with nothing due,
- edit: one schedule edit becoming visible (cronsvc: PATCH through the API,
  then the next tick; stock: a PeriodicTask save, then the reloading tick),
- dispatch: DUE crons due in the same second (a minute boundary); the delay
  from that instant to each run being dispatched — for cronsvc, its run row
  created as pending and the wake-up messages of its batch published; for
  stock, its task message published. No worker runs.

A step that does not finish within --bound seconds is stopped and reported
as a lower bound ("> N"). Figures are printed with cronsvc/stock ratios.
Needs PostgreSQL and Redis (scripts/bench.sh sets them up).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from benchenv import ROOT, BenchDatabase

DB = BenchDatabase("cronsvc_bench", redis_db=14, queue="cronsvc-bench")


def rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def setup_django():
    import django

    django.setup()


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# ----------------------------------------------------------------- parent


def load(size: int) -> float:
    from django.db import connection

    from crons.services import crons_bulk_create
    from cronsvc.selectors import assistant_get_or_404

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE crons_tick, runs_run, threads_thread, crons_cron, "
            "django_celery_beat_periodictask, django_celery_beat_crontabschedule, "
            "django_celery_beat_clockedschedule, django_celery_beat_periodictasks CASCADE"
        )
    hour = (datetime.now(UTC).hour + 6) % 24
    specs = []
    for i in range(size):
        h = (hour + i % 5 - 2) % 24
        # Half plain fixed hours (stock hides them outside a ±2 h window), half
        # hour lists (stock loads them); none due while the benchmark runs.
        schedule = f"{i % 60} {h} * * *" if i % 2 else f"{i % 60} {h},{(h + 12) % 24} * * *"
        specs.append({"schedule": schedule})
    started = time.perf_counter()
    agent = assistant_get_or_404("agent")
    for start in range(0, size, 100_000):  # bounded memory for a million
        crons_bulk_create(assistant=agent, specs=specs[start : start + 100_000])
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # what autovacuum does after a bulk load
    return elapsed


def child(kind: str, phase: str, size: int, due: int, bound: float) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--phase",
        phase,
        "--sizes",
        str(size),
        "--due",
        str(due),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=bound, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"timeout": bound}
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(value, unit="", lower=False):
    if value is None:
        return "n/a"
    text = f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return (">" if lower else "") + text + unit


def ratio(ours, theirs, lower=False):
    if ours in (None, 0) or theirs is None:
        return "n/a"
    return (
        ("≥" if lower else "") + f"{theirs / ours:,.0f}× better"
        if theirs >= ours
        else f"{ours / theirs:,.1f}× worse"
    )


def report(size, load_s, ours, stock, due):
    print(f"\n== {size:,} crons (bulk import {load_s:.1f} s) ==")
    if "error" in ours:
        print("cronsvc failed:", ours["error"])
        return
    stock_lower = "timeout" in stock
    stock = stock if not stock_lower else {}
    rows = [
        ("scheduler load (s)", ours.get("load_s"), stock.get("load_s")),
        ("memory growth (MB)", ours.get("mem_mb"), stock.get("mem_mb")),
        ("idle tick (ms)", ours.get("idle_tick_ms"), stock.get("idle_tick_ms")),
        ("one edit visible (s)", ours.get("edit_s"), stock.get("edit_s")),
    ]
    print(f"{'':28}{'cronsvc':>14}{'stock':>16}   ratio")
    for name, a, b in rows:
        lower = stock_lower and b is None
        bval = (stock_lower and None) or b
        print(
            f"{name:28}{fmt(a):>14}{(fmt(bval) if not lower else '> bound'):>16}   {ratio(a, bval) if bval is not None else 'stock did not finish'}"
        )
    if "rows_loaded" in stock:
        print(
            f"stock loaded {stock['rows_loaded']:,} of {size:,} periodic tasks (fixed-hour crontabs "
            f"outside ±2 h are hidden) and reloads them all every 300 s and on any change"
        )
    if stock_lower:
        print(
            f"stock did not finish its load/tick/edit steps within {(stock_lower and stock) or ''}the bound"
        )


def report_dispatch(size, due, ours, stock):
    if "error" in ours:
        print("cronsvc dispatch failed:", ours["error"])
    print(f"-- {due:,} crons due in the same second (of {size:,}); workers stopped --")
    print(f"{'delay instant → dispatched':28}{'cronsvc':>14}{'stock':>16}   ratio")
    for key in ("p50", "p99", "max"):
        a = ours.get(key)
        if stock is None:
            print(f"{key + ' (s)':28}{fmt(a):>14}{'not run':>16}")
            continue
        b = stock.get(key) if "timeout" not in stock else None
        print(
            f"{key + ' (s)':28}{fmt(a):>14}{(fmt(b) if b is not None else '> bound'):>16}   {ratio(a, b) if b is not None else 'stock did not finish'}"
        )
    if stock is None:
        stock_dispatched = "not run"
    else:
        stock_dispatched = stock.get("dispatched", "n/a") if "timeout" not in stock else "> bound"
    print(f"dispatched: cronsvc {ours.get('dispatched', 0):,}/{due:,}, stock {stock_dispatched}")
    target = ours.get("p99")
    print(
        f"design target p99 < 1 s: {'met' if target is not None and target < 1 else 'NOT met'}"
        f" (cronsvc p99 {fmt(target)} s)"
    )


def make_due(due: int) -> datetime:
    """Point `due` crons (and their mirrors) at `* * * * *`, due at the next minute boundary."""
    from django.db import connection
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    from crons.models import Cron

    now = datetime.now(UTC)
    boundary = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (boundary - now).total_seconds() < 25:
        boundary += timedelta(minutes=1)
    ids = list(Cron.objects.order_by("cron_id").values_list("cron_id", flat=True)[:due])
    Cron.objects.filter(pk__in=ids).update(schedule="* * * * *", next_run_date=boundary)
    every = CrontabSchedule.objects.create(
        minute="*", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.filter(cron__cron_id__in=ids).update(crontab=every, last_run_at=None)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return boundary


def purge_queue():
    from cronsvc.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(os.environ["CELERY_QUEUE"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--due", type=int, default=10000)
    parser.add_argument("--bound", type=float, default=300)
    parser.add_argument(
        "--dispatch-only",
        default="",
        help="sizes for which only cronsvc's dispatch is measured (no baseline)",
    )
    parser.add_argument(
        "--cronsvc-only",
        default="",
        help="sizes (e.g. 1000000) measured for cronsvc alone: load, memory, idle tick, edit, "
        "dispatch",
    )
    parser.add_argument("--child")
    parser.add_argument("--phase")
    parser.add_argument("--boundary")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.child:
        setup_django()
        result = CHILDREN[(args.child, args.phase)](sizes[0], args)
        print(json.dumps(result))
        return
    started = time.monotonic()
    print(
        f"cronsvc beat benchmark — PostgreSQL {os.environ['DATABASE_URL']}, "
        f"Redis {os.environ['CELERY_BROKER_URL']}"
    )
    DB.recreate()
    for size in [int(x) for x in args.dispatch_only.split(",") if x]:
        load(size)
        dispatch_alone(size, args.due, args.bound)
    for size in sizes:
        load_s = load(size)
        ours = child("cronsvc", "steady", size, args.due, args.bound)
        stock = child("stock", "steady", size, args.due, args.bound)
        report(size, load_s, ours, stock, args.due)
        due = min(args.due, size)
        purge_queue()
        boundary = make_due(due)
        ours_d = child_dispatch("cronsvc", size, due, boundary, args.bound)
        purge_queue()
        load(size)  # same rows again for the baseline
        boundary = make_due(due)
        stock_d = child_dispatch("stock", size, due, boundary, args.bound)
        purge_queue()
        report_dispatch(size, due, ours_d, stock_d)
    for size in [int(x) for x in args.cronsvc_only.split(",") if x]:
        load_s = load(size)
        ours = child("cronsvc", "steady", size, args.due, args.bound)
        print(f"\n== {size:,} crons, cronsvc only (bulk import {load_s:.0f} s) ==")
        for key, label in (
            ("load_s", "scheduler load (s)"),
            ("mem_mb", "memory growth (MB)"),
            ("idle_tick_ms", "idle tick (ms)"),
            ("edit_s", "one edit visible (s)"),
        ):
            print(f"{label:28}{fmt(ours.get(key)):>14}")
        dispatch_alone(size, args.due, args.bound)
    print(f"\ntotal benchmark time {time.monotonic() - started:.0f} s")


def dispatch_alone(size: int, due: int, bound: float) -> None:
    """cronsvc's dispatch of `due` of the loaded `size` crons, with no baseline."""
    purge_queue()
    due = min(due, size)
    report_dispatch(size, due, child_dispatch("cronsvc", size, due, make_due(due), bound), None)


def child_dispatch(kind, size, due, boundary, bound):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--phase",
        "dispatch",
        "--sizes",
        str(size),
        "--due",
        str(due),
        "--boundary",
        boundary.isoformat(),
    ]
    wait = (boundary - datetime.now(UTC)).total_seconds()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=wait + bound, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"timeout": bound}
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ children


# What the edit step sets: a schedule that is not due while the benchmark runs,
# so the crons due in the dispatch step are exactly the ones it made due.
YEARLY = "0 0 1 1 *"


def cronsvc_steady(size, args):
    from django.test import Client

    from crons.models import Cron
    from crons.scheduler import CronScheduler
    from cronsvc.celery import app

    base = rss_mb()
    t0 = time.perf_counter()
    scheduler = CronScheduler(app=app)
    load_s = time.perf_counter() - t0
    ticks = []
    for _ in range(20):
        t = time.perf_counter()
        scheduler.tick()
        ticks.append(time.perf_counter() - t)
    cron = Cron.objects.order_by("cron_id").last()
    t = time.perf_counter()
    response = Client().patch(
        f"/runs/crons/{cron.cron_id}", {"schedule": YEARLY}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    scheduler.tick()  # the edit is read here: next_run_date is an indexed column
    edit_s = time.perf_counter() - t
    scheduler.advancer.stopped.set()
    return {
        "load_s": load_s,
        "mem_mb": rss_mb() - base,
        "idle_tick_ms": statistics.median(ticks[1:]) * 1000,
        "edit_s": edit_s,
    }


def stock_steady(size, args):
    from django_celery_beat.models import CrontabSchedule, PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from cronsvc.celery import app

    base = rss_mb()
    t0 = time.perf_counter()
    scheduler = DatabaseScheduler(app=app)
    loaded = len(scheduler.schedule)
    load_s = time.perf_counter() - t0
    mem = rss_mb() - base
    ticks = []
    for _ in range(5):
        t = time.perf_counter()
        scheduler.tick()
        ticks.append(time.perf_counter() - t)
    task = PeriodicTask.objects.filter(crontab__isnull=False).order_by("id").last()
    t = time.perf_counter()
    task.crontab = CrontabSchedule.objects.create(
        minute="0", hour="0", day_of_month="1", month_of_year="1", timezone="UTC"
    )
    task.save()  # bumps PeriodicTasks: the next tick reloads every row
    time.sleep(max(0.0, 1.01 - (time.perf_counter() - t)))  # last_change has 1 s resolution
    t = time.perf_counter()
    scheduler.tick()
    edit_s = time.perf_counter() - t
    return {
        "load_s": load_s,
        "mem_mb": mem,
        "idle_tick_ms": statistics.median(ticks[1:]) * 1000,
        "edit_s": edit_s,
        "rows_loaded": loaded,
    }


def cronsvc_dispatch(size, args):
    from crons import ticking
    from crons.scheduler import CronScheduler
    from cronsvc.celery import app
    from runs import wakeups
    from runs.models import Run

    boundary = datetime.fromisoformat(args.boundary)
    published = []  # wall times at which each fired batch's wake-ups were out
    original = wakeups.wake_workers

    def timed_wake(count):
        original(count)
        published.append(time.time())

    ticking.wake_workers = timed_wake
    scheduler = CronScheduler(app=app)
    deadline = time.time() + (boundary - datetime.now(UTC)).total_seconds() + args.bound
    while time.time() < deadline:
        delay = scheduler.tick()
        woken = [p for p in published if p >= boundary.timestamp() - 0.001]
        if woken and Run.objects.filter(scheduled_at=boundary).count() >= args.due:
            break
        time.sleep(max(0.0, min(delay, 0.5)))
    scheduler.advancer.stopped.set()
    created = sorted(Run.objects.filter(scheduled_at=boundary).values_list("created_at", flat=True))
    # A run is dispatched once its row exists and a wake-up that can claim it
    # is published: the first publish after both its creation and its instant
    # (no worker claims a run before its instant).
    delays = []
    for c in created:
        ready = max(c.timestamp(), boundary.timestamp()) - 0.001
        after = [p for p in published if p >= ready]
        done = after[0] if after else None
        if done is not None:
            delays.append(done - boundary.timestamp())
    return {
        "dispatched": len(delays),
        "p50": pct(delays, 50),
        "p99": pct(delays, 99),
        "max": max(delays) if delays else None,
    }


def stock_dispatch(size, args):
    from celery.beat import Scheduler
    from django_celery_beat.schedulers import DatabaseScheduler

    from cronsvc.celery import app

    boundary = datetime.fromisoformat(args.boundary)
    sent = []
    original = Scheduler.apply_async

    def timed(self, entry, producer=None, advance=True, **kwargs):
        result = original(self, entry, producer, advance, **kwargs)
        sent.append(time.time())
        return result

    Scheduler.apply_async = timed
    scheduler = DatabaseScheduler(app=app)
    deadline = time.time() + (boundary - datetime.now(UTC)).total_seconds() + args.bound
    while time.time() < deadline and len([s for s in sent if s >= boundary.timestamp()]) < args.due:
        delay = scheduler.tick()
        time.sleep(max(0.0, min(delay, 1.0)))
    delays = [s - boundary.timestamp() for s in sent if s >= boundary.timestamp() - 1]
    return {
        "dispatched": len(delays),
        "p50": pct(delays, 50),
        "p99": pct(delays, 99),
        "max": max(delays) if delays else None,
    }


CHILDREN = {
    ("cronsvc", "steady"): cronsvc_steady,
    ("stock", "steady"): stock_steady,
    ("cronsvc", "dispatch"): cronsvc_dispatch,
    ("stock", "dispatch"): stock_dispatch,
}

if __name__ == "__main__":
    main()
