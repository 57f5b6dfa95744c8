"""Stopping one of two workers (SIGTERM, Celery's warm shutdown) during a burst
of runs loses none and runs none twice: every run ends `success` after one
attempt, with exactly one AI message in its thread's checkpoint."""

from __future__ import annotations

import signal
import threading

import pytest
from django.db import connection

from cronsvc.models import WorkerHeartbeat
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from runs.services import run_create
from tests.conftest import start_worker, wait_until
from tests.factories import ai_messages_in_checkpoint
from threads.services import thread_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUNS = 32
GRAPH_SECONDS = "1.0"
QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


def create_burst(assistant, threads) -> list[Run]:
    """One run per thread, each created from a Python thread of its own."""
    runs: list[Run] = []
    errors: list[Exception] = []

    def create(thread):
        try:
            runs.append(run_create(thread=thread, assistant=assistant, kwargs=QUESTION))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    creators = [threading.Thread(target=create, args=(t,)) for t in threads]
    for c in creators:
        c.start()
    for c in creators:
        c.join()
    assert errors == []
    return runs




def test_sigterm_to_one_of_two_workers_during_a_burst_completes_every_run_once(tmp_path):
    a = start_worker(tmp_path / "a", name="a", SLOW_GRAPH_SECONDS=GRAPH_SECONDS)
    b = start_worker(tmp_path / "b", name="b", SLOW_GRAPH_SECONDS=GRAPH_SECONDS)
    try:
        slow = assistant_get_or_404("slow")
        threads = [thread_create() for _ in range(RUNS)]

        runs = create_burst(slow, threads)
        # Both workers are executing runs when b is told to stop.
        wait_until(lambda: "runs.drain" in b.output() and "runs.drain" in a.output(), timeout=30)
        wait_until(lambda: Run.objects.filter(status="running").count() >= 4, timeout=30)
        running_at_sigterm = Run.objects.filter(status="running").count()
        b.stop(signal.SIGTERM, timeout=120)

        # b shut down warmly: exit status 0, and runs it had in flight finished
        # after the signal rather than being dropped.
        assert b.popen.returncode == 0, b.output()[-3000:]
        after_sigterm = b.output().split("Warm shutdown", 1)
        assert len(after_sigterm) == 2, b.output()[-3000:]
        assert "succeeded" in after_sigterm[1]
        # Its heartbeat went with it; a's is still there.
        names = [h.name.split("-")[0] for h in WorkerHeartbeat.objects.all()]
        assert "a" in names and "b" not in names

        wait_until(
            lambda: not Run.objects.filter(status__in=["pending", "running"]).exists(), timeout=120
        )
        finished = {r.run_id: r for r in Run.objects.filter(pk__in=[r.run_id for r in runs])}
        assert len(finished) == RUNS
        assert running_at_sigterm >= 4
        assert {r.status for r in finished.values()} == {"success"}
        assert {r.attempts for r in finished.values()} == {1}
        assert {r.error for r in finished.values()} == {None}
        for run in finished.values():
            assert [m["type"] for m in run.output["messages"]] == ["human", "ai"]
            assert ai_messages_in_checkpoint(run.thread_id) == 1
    finally:
        b.stop()
        a.stop()
