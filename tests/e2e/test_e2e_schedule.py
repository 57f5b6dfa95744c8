"""End to end: langgraph_sdk → API → cronsvc's beat → Redis → worker → graph.

A `* * * * *` cron fires at exactly the next minute boundary; after
crons.delete nothing fires at the following one. Stateless crons with
on_run_completed "delete" leave no thread, with "keep" they do.
"""

import datetime as dt
import logging
import time

import pytest

from crons.models import Tick
from runs.models import Run
from tests.conftest import start_beat, wait_until
from threads.models import Thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
log = logging.getLogger(__name__)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def test_every_minute_cron_fires_at_the_boundary_and_stops_after_delete(sdk, worker, tmp_path):
    beat = start_beat(tmp_path)
    try:
        # Keep clear of the boundary so all three crons share the next minute.
        if dt.datetime.now(dt.UTC).second >= 55:
            time.sleep(6)
        thread = sdk.threads.create()
        on_thread = sdk.crons.create_for_thread(
            thread["thread_id"], "agent", schedule="* * * * *", input=QUESTION
        )
        deleting = sdk.crons.create("agent", schedule="* * * * *", input=QUESTION)
        keeping = sdk.crons.create(
            "agent", schedule="* * * * *", input=QUESTION, on_run_completed="keep"
        )
        boundary = dt.datetime.fromisoformat(on_thread["next_run_date"])
        assert boundary.second == 0 and boundary > dt.datetime.now(dt.UTC)
        assert boundary - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=1)
        assert {deleting["next_run_date"], keeping["next_run_date"]} == {on_thread["next_run_date"]}

        runs = wait_until(
            lambda: [r for r in sdk.runs.list(thread["thread_id"]) if r["status"] == "success"],
            timeout=90,
        )
        run = Run.objects.get(pk=runs[0]["run_id"])
        assert run.scheduled_at == boundary
        assert str(run.cron_id) == on_thread["cron_id"]
        log.warning(
            "tick %s: run started %.3f s after it",
            boundary,
            (run.started_at - boundary).total_seconds(),
        )
        state = sdk.threads.get_state(thread["thread_id"])
        assert state["values"]["messages"][-1]["content"].startswith("It is ")

        for cron in (deleting, keeping):
            tick = wait_until(
                lambda cron=cron: Tick.objects.filter(
                    cron_id=cron["cron_id"], status="fired"
                ).first(),
                timeout=30,
            )
            assert tick.scheduled_at == boundary
        keep_tick = Tick.objects.get(cron_id=keeping["cron_id"])
        kept = wait_until(
            lambda: Run.objects.filter(pk=keep_tick.run_id, status="success").first(), timeout=30
        )
        assert Thread.objects.filter(pk=kept.thread_id).exists()
        assert sdk.threads.get_state(str(kept.thread_id))["values"]["messages"][-1]["type"] == "ai"
        # on_run_completed="delete": the thread (and its run) go; the tick stays.
        delete_tick = Tick.objects.get(cron_id=deleting["cron_id"])
        wait_until(lambda: not Run.objects.filter(pk=delete_tick.run_id).exists(), timeout=30)
        assert Tick.objects.filter(pk=delete_tick.pk).exists()

        for cron in (on_thread, deleting, keeping):
            sdk.crons.delete(cron["cron_id"])
        following = boundary + dt.timedelta(minutes=1)
        time.sleep(max(0.0, (following - dt.datetime.now(dt.UTC)).total_seconds()) + 3)
        assert not Tick.objects.filter(scheduled_at__gte=following).exists()
        assert not Run.objects.filter(scheduled_at__gte=following).exists()
        assert [r["status"] for r in sdk.runs.list(thread["thread_id"])] == ["success"]
    finally:
        beat.stop()
