"""`manage.py runall`: the compose topology as local processes, for real —
migrate, gunicorn (`serve`), beat, two workers and the webhook worker on the test PostgreSQL
database and Redis; runs and a cron through langgraph_sdk; SIGTERM stops all
of them cleanly."""

from __future__ import annotations

import os
import re
import signal
import sys

import httpx
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from crons.models import SchedulerLease
from cronsvc import topology
from cronsvc.models import WorkerHeartbeat
from runs.models import Run
from tests.conftest import QUEUE, Proc, subprocess_env, wait_until
from tests.e2e.test_webhooks import Receiver
from tests.factories import free_port

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


def open_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def child_pids(runall: Proc) -> dict[str, int]:
    return {
        name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", runall.output())
    }


def test_runall_refuses_without_api_keys_before_starting_anything(settings, monkeypatch):
    settings.CRONSVC_API_KEYS = []
    settings.CRONSVC_ALLOW_ANONYMOUS = False
    started = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: started.append(a))
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: started.append(a))

    with pytest.raises(CommandError, match="Refusing to serve without API keys"):
        call_command("runall", workers=2)
    assert started == []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_runall_serves_runs_and_crons_and_stops_cleanly_on_sigterm(tmp_path):
    from langgraph_sdk import get_sync_client

    port = free_port()
    receiver = Receiver()
    before = open_connections()
    url = f"http://127.0.0.1:{port}"
    runall = Proc(
        [
            sys.executable,
            "manage.py",
            "runall",
            "--workers",
            "2",
            "--concurrency",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        subprocess_env(
            tmp_path,
            # Queues of its own: the session's workers (webhook worker included, with
            # no loopback allowlist) must not take runall's messages.
            CELERY_QUEUE=f"{QUEUE}-runall",
            CRONSVC_ALLOW_ANONYMOUS="true",
            WEB_CONCURRENCY="1",
            CRONSVC_WEB_THREADS="4",
            CRONSVC_HEARTBEAT_INTERVAL="1",
            CRONSVC_WEBHOOK_ALLOWLIST="127.0.0.1",
        ),
        "runall",
    )
    try:
        runall.wait_for("runall: API on", timeout=90)
        pids = child_pids(runall)
        assert set(pids) == {"api", "beat", "worker1", "worker2", "webhooks"}

        # Beat holds the lease and both workers beat: /health is 200.
        def healthy():
            response = get(f"{url}/health")
            return response is not None and response.status_code == 200 and response.json()

        health = wait_until(healthy, timeout=90, interval=0.5)
        # (the session's test worker may be listed too)
        names = sorted(n["name"].split("@")[0] for n in health["workers"]["nodes"])
        assert [n for n in names if n.startswith("worker")] == ["worker1", "worker2"]
        # Each heartbeat says how many slots its pool has (beat wakes that many).
        slots = WorkerHeartbeat.objects.filter(name__startswith="worker")
        assert sorted(slots.values_list("concurrency", flat=True)) == [2, 2]
        assert health["beat"]["status"] == "ok"

        sdk = get_sync_client(url=url, api_key=None)
        threads = [sdk.threads.create() for _ in range(6)]
        runs = [sdk.runs.create(t["thread_id"], "agent", input=QUESTION) for t in threads]
        for thread, run in zip(threads, runs, strict=True):
            values = sdk.runs.join(thread["thread_id"], run["run_id"])
            assert [m["type"] for m in values["messages"]] == ["human", "ai"]
            assert sdk.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"
        attempts = Run.objects.filter(pk__in=[r["run_id"] for r in runs]).values_list("attempts")
        assert sorted(attempts) == [(1,)] * 6

        # The webhook worker beats as one (its slots take no runs)...
        wait_until(
            lambda: WorkerHeartbeat.objects.filter(
                name__startswith="webhooks@", role="webhooks", concurrency=4
            ).exists(),
            timeout=30,
        )
        # ...and delivers (its own queue: nothing else consumes it).
        hooked = sdk.runs.create(
            threads[0]["thread_id"], "agent", input=QUESTION, webhook=receiver.url
        )
        wait_until(
            lambda: Run.objects.filter(pk=hooked["run_id"], webhook_status="delivered").exists(),
            timeout=60,
        )
        assert [r["body"]["run_id"] for r in receiver.requests] == [hooked["run_id"]]

        # beat fires a cron (every 2 seconds; croniter puts seconds last).
        cron_thread = sdk.threads.create()
        cron = sdk.crons.create_for_thread(
            cron_thread["thread_id"], "agent", schedule="* * * * * */2", input=QUESTION
        )
        wait_until(
            lambda: [
                r for r in sdk.runs.list(cron_thread["thread_id"]) if r["status"] == "success"
            ],
            timeout=60,
        )
        sdk.crons.delete(cron["cron_id"])

        # Within the documented connection budget (connections persist, so
        # this counts every thread that has used one).
        opened = open_connections() - before
        budget = topology.connection_budget(
            workers=2,
            concurrency=2,
            web_workers=1,
            web_threads=4,
            pool_size=settings.CRONSVC_CHECKPOINTER_POOL_SIZE,
            webhook_workers=1,
            offloop_threads=settings.CRONSVC_OFFLOOP_THREADS,
        )
        print(f"runall holds {opened} PostgreSQL connections (budget {budget})")
        assert 0 < opened <= budget

        runall.stop(signal.SIGTERM, timeout=120)

        assert runall.popen.returncode == 0, runall.output()[-4000:]
        assert (
            "runall: stopped (api 0, beat 0, worker1 0, worker2 0, webhooks 0)" in runall.output()
        )
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert get(f"{url}/ok") is None
        # Warm shutdowns: workers removed their heartbeats, beat released its lease.
        assert not WorkerHeartbeat.objects.filter(name__startswith="worker").exists()
        assert not WorkerHeartbeat.objects.filter(name__startswith="webhooks").exists()
        assert SchedulerLease.objects.get().holder == ""
    finally:
        receiver.close()
        runall.stop(signal.SIGTERM, timeout=60)
        # Children run in sessions of their own: never leave one behind.
        for pid in child_pids(runall).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
