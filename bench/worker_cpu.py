"""Worker CPU per scheduled run, against LangGraph's own floor.

    scripts/bench.sh cpu              # this file, with the venv and services set up
    .venv/bin/python bench/worker_cpu.py --runs 300 --concurrency 8 --rounds 1

N stateless crons of the trivial `agent` graph (one node, no waiting) are due
at one instant. One worker process (the deployment's command line from
cronsvc/topology.py, threads pool) and one beat run on loopback PostgreSQL and
Redis. A small warm-up burst is due first, so the measured burst starts with
a warm process (imports, pools, first compilations done). The worker's CPU is
read from the operating system (/proc: utime + stime of the worker and its
descendants, plus what their finished children left in cutime + cstime) just
before the measured instant and once every measured run has finished and, for
stateless crons (`on_run_completed="delete"`, the default), once their threads
are deleted; divided by the runs finished.

In the same command, LangGraph's floor: the same one-node graph compiled with
`PostgresSaver.from_conn_string` on the same database, `invoke` in a loop
(a new thread each time, as a stateless cron run), CPU of this process per
invoke from os.times(). Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from benchenv import ROOT, BenchDatabase

DB = BenchDatabase("cronsvc_bench_cpu", redis_db=12, queue="cronsvc-bench-cpu")
TICKS = os.sysconf("SC_CLK_TCK")
GRAPH = "agent"
GRAPH_INPUT = {"messages": [{"role": "user", "content": "What time is it?"}]}


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants, plus cutime + cstime
    (the CPU of children that have exited and were waited for)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
    return total + sum(tree_cpu_seconds(child) for child in _children(pid))


def floor_ms(invokes: int) -> float:
    """LangGraph alone: CPU ms per invoke of the one-node graph with PostgresSaver."""
    import importlib.util

    from langgraph.checkpoint.postgres import PostgresSaver

    from cronsvc.checkpointer import postgres_conninfo

    spec = importlib.util.spec_from_file_location("bench_agent", ROOT / "examples" / "agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with PostgresSaver.from_conn_string(postgres_conninfo()) as saver:
        graph = module.builder.compile(checkpointer=saver)

        def invoke() -> None:
            graph.invoke(GRAPH_INPUT, {"configurable": {"thread_id": str(uuid.uuid4())}})

        for _ in range(20):
            invoke()
        before = os.times()
        for _ in range(invokes):
            invoke()
        after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return 1000 * cpu / invokes


def _start(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def one_round(runs: int, warmup: int, concurrency: int, on_completed: str, bound: float) -> dict:
    from django.db import connection
    from django.db.models.functions import Now

    from crons.models import Cron, Tick
    from crons.services import crons_bulk_create
    from cronsvc.celery import app
    from cronsvc.dbclock import db_now
    from cronsvc.heartbeats import live_worker_slots
    from cronsvc.selectors import assistant_get_or_404
    from cronsvc.topology import BEAT, WORKER, local_argv
    from runs.models import Run
    from threads.models import Thread

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crons_tick, runs_run, threads_thread, crons_cron CASCADE")
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(os.environ["CELERY_QUEUE"])
    assistant = assistant_get_or_404(GRAPH)
    # A yearly schedule whose next fire is moved to a shared instant once the
    # worker is up: every cron fires exactly once during the round.
    crons_bulk_create(
        assistant=assistant,
        specs=[
            {
                "schedule": "0 0 1 1 *",
                "payload": {"input": GRAPH_INPUT},
                "on_run_completed": on_completed,
            }
            for _ in range(warmup + runs)
        ],
    )
    ids = list(Cron.objects.order_by("cron_id").values_list("cron_id", flat=True))
    warm_ids, measured_ids = ids[:warmup], ids[warmup:]
    Cron.objects.update(next_run_date=Now() + timedelta(days=30))

    env = {
        **os.environ,
        "CELERY_WORKER_CONCURRENCY": str(concurrency),
        "CRONSVC_DATA_DIR": tempfile.mkdtemp(),
    }
    beat = _start(local_argv(BEAT), env)
    worker = _start(
        [*local_argv(WORKER), "-n", "benchcpu@%h", "-Q", os.environ["CELERY_QUEUE"]], env
    )
    result: dict = {"runs": runs}
    try:
        ready_by = time.time() + 120
        while live_worker_slots() < concurrency and time.time() < ready_by:
            time.sleep(0.2)
        now = db_now()
        warm_at = (now + timedelta(seconds=4)).replace(microsecond=0)
        instant = warm_at + timedelta(seconds=12)
        Cron.objects.filter(pk__in=warm_ids).update(next_run_date=warm_at)
        Cron.objects.filter(pk__in=measured_ids).update(next_run_date=instant)
        ticks = Tick.objects.filter(cron_id__in=measured_ids, status=Tick.Status.FIRED)
        while db_now() < instant - timedelta(seconds=0.5):
            time.sleep(0.05)
        cpu_before = tree_cpu_seconds(worker.pid)
        started = time.monotonic()
        deadline = started + bound
        finished_at = None
        while time.monotonic() < deadline:
            fired = ticks.count()
            active = Run.objects.filter(
                cron_id__in=measured_ids, status__in=[Run.Status.PENDING, Run.Status.RUNNING]
            ).count()
            if fired >= runs and active == 0:
                if finished_at is None:
                    finished_at = time.monotonic()
                    result["errors"] = Run.objects.filter(
                        cron_id__in=measured_ids, status=Run.Status.ERROR
                    ).count()
                if on_completed != "delete" or not Thread.objects.exists():
                    break
            time.sleep(0.1)
        cpu_after = tree_cpu_seconds(worker.pid)
        result["done"] = (
            ticks.count()
            - Run.objects.filter(
                cron_id__in=measured_ids, status__in=[Run.Status.PENDING, Run.Status.RUNNING]
            ).count()
        )
        result["wall_s"] = (finished_at or time.monotonic()) - started
        result["threads_left"] = Thread.objects.count()
        result["cpu_s"] = cpu_after - cpu_before
    finally:
        for p in (beat, worker):
            p.terminate()
        for p in (beat, worker):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="median of this many rounds")
    parser.add_argument("--invokes", type=int, default=300, help="invokes for the floor")
    parser.add_argument(
        "--on-completed", default="delete", choices=["delete", "keep"], help="stateless threads"
    )
    parser.add_argument("--bound", type=float, default=300)
    args = parser.parse_args()
    DB.recreate()
    print(
        f"worker CPU — {args.runs} stateless crons of `{GRAPH}` due at one instant "
        f"(on_run_completed={args.on_completed}); 1 worker, threads pool, concurrency "
        f"{args.concurrency}; {args.warmup} warm-up runs first; {os.cpu_count()} cores"
    )
    per_run = []
    for i in range(args.rounds):
        r = one_round(args.runs, args.warmup, args.concurrency, args.on_completed, args.bound)
        ms = 1000 * r["cpu_s"] / r["done"] if r["done"] else float("nan")
        per_run.append(ms)
        print(
            f"round {i + 1}: {r['done']}/{r['runs']} runs finished ({r.get('errors', '?')} errors)"
            f" in {r['wall_s']:.1f} s, {r['threads_left']} threads left; worker CPU "
            f"{r['cpu_s']:.2f} s = {ms:.2f} ms per run"
        )
    worker_ms = statistics.median(per_run)
    floor = floor_ms(args.invokes)
    print(f"{'':<44}{'CPU ms per run':>16}")
    print(f"{'cronsvc worker (scheduled run, end to end)':<44}{worker_ms:>16.2f}")
    print(f"{'LangGraph floor (invoke + PostgresSaver)':<44}{floor:>16.2f}")
    print(f"{'ratio':<44}{worker_ms / floor:>15.2f}×")


if __name__ == "__main__":
    main()
