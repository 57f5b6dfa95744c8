"""End to end, over HTTP: langgraph_sdk's client.http → API → Redis → worker →
graph, with beat running beside them (issue #15's scheduler control).

A trigger fires a manual tick whose run completes; a backfill of the past
hour of `*/10 * * * *` fires each of its 6 instants once and every run
completes; the same backfill again fires none; the ticks endpoint lists them
with their kind and run status, and the schedule endpoint the next instants.
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise

import pytest

from crons import firetime
from crons.models import Tick
from runs.models import Run
from tests.conftest import start_beat, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
SCHEDULE = "*/10 * * * *"


def test_trigger_backfill_ticks_and_schedule_with_a_worker_and_beat(sdk, worker, tmp_path):
    beat = start_beat(tmp_path)
    try:
        # "keep": the runs (and their threads) stay, so their status can be read.
        cron = sdk.crons.create("agent", schedule=SCHEDULE, input=QUESTION, on_run_completed="keep")
        cid = cron["cron_id"]
        # The hour before the cron existed: instants beat never fires for it.
        end = dt.datetime.fromisoformat(cron["created_at"]).replace(microsecond=0)
        start = end - dt.timedelta(hours=1)
        instants = firetime.next_fires(SCHEDULE, None, start - dt.timedelta(microseconds=1), 6)
        assert all(start <= t < end for t in instants)

        # Trigger: a manual tick, its run executed by the worker.
        run = sdk.http.post(f"/runs/crons/{cid}/trigger", json=None)
        assert run["status"] in ("pending", "running", "success")
        done = wait_until(
            lambda: (
                (r := sdk.runs.get(run["thread_id"], run["run_id"]))["status"] == "success" and r
            ),
            timeout=60,
        )
        assert done["metadata"] == {"cron_id": cid}
        state = sdk.threads.get_state(run["thread_id"])
        assert state["values"]["messages"][-1]["content"].startswith("It is ")

        # Backfill the past hour: 6 instants, each fired once.
        body = {"start": start.isoformat(), "end": end.isoformat()}
        first = sdk.http.post(f"/runs/crons/{cid}/backfill", json=body)
        assert first == {"instants": 6, "fired": 6, "already_fired": 0, "rejected": 0, "skipped": 0}

        def backfilled() -> list[dict]:
            ticks = sdk.http.get(f"/runs/crons/{cid}/ticks", params={"limit": 100})
            return [t for t in ticks if t["kind"] == "backfill"]

        finished = wait_until(
            lambda: (
                (ticks := backfilled())
                and all(t["run_status"] == "success" for t in ticks)
                and ticks
            ),
            timeout=90,
            interval=0.5,
        )
        assert [t["scheduled_at"] for t in finished] == [t.isoformat() for t in reversed(instants)]
        assert {(t["status"], t["reason"], t["attempts"]) for t in finished} == {
            ("fired", "backfilled", 1)
        }
        for tick in finished:
            stored = Run.objects.get(pk=tick["run_id"])
            assert stored.scheduled_at.isoformat() == tick["scheduled_at"]
            assert stored.status == "success" and stored.attempts == 1
            state = sdk.threads.get_state(str(stored.thread_id))
            assert state["values"]["messages"][-1]["content"].startswith("It is ")
        assert len({t["run_id"] for t in finished}) == 6

        # The same backfill again fires none.
        second = sdk.http.post(f"/runs/crons/{cid}/backfill", json=body)
        assert second == {
            "instants": 6,
            "fired": 0,
            "already_fired": 6,
            "rejected": 0,
            "skipped": 0,
        }

        # The ticks answer: the manual tick and the 6 backfilled, newest first, with
        # their kind and run status; beat's own (should a */10 boundary have passed)
        # are scheduled ticks of instants after the cron was created.
        headers = {}
        ticks = sdk.http.get(
            f"/runs/crons/{cid}/ticks",
            params={"limit": 100},
            on_response=lambda r: headers.update(r.headers),
        )
        assert int(headers["x-pagination-total"]) == len(ticks)
        assert [t["scheduled_at"] for t in ticks] == sorted(
            (t["scheduled_at"] for t in ticks), reverse=True
        )
        ours = [t for t in ticks if t["kind"] != "scheduled"]
        assert [(t["kind"], t["status"], t["run_status"]) for t in ours] == [
            ("manual", "fired", "success")
        ] + [("backfill", "fired", "success")] * 6
        assert ours[0]["run_id"] == run["run_id"] and ours[0]["reason"] == "triggered"
        for t in ticks:
            if t["kind"] == "scheduled":
                assert dt.datetime.fromisoformat(t["scheduled_at"]) > end
        kinds = Tick.objects.filter(cron_id=cid).values_list("kind", flat=True)
        assert sorted(k for k in kinds if k != "scheduled") == ["backfill"] * 6 + ["manual"]
        assert Run.objects.filter(cron_id=cid, scheduled_at__lt=end).count() == 6

        # The schedule answer: the next instants from now, as beat computes them.
        before = dt.datetime.now(dt.UTC)
        schedule = sdk.http.get(f"/runs/crons/{cid}/schedule", params={"limit": 3})
        after = dt.datetime.now(dt.UTC)
        assert schedule["timezone"] == "UTC"
        nexts = [dt.datetime.fromisoformat(t) for t in schedule["next"]]
        assert nexts[0] in (
            firetime.next_fire(SCHEDULE, None, before),
            firetime.next_fire(SCHEDULE, None, after),
        )
        assert nexts == firetime.next_fires(SCHEDULE, None, nexts[0] - dt.timedelta(seconds=1), 3)
        assert [b - a for a, b in pairwise(nexts)] == [dt.timedelta(minutes=10)] * 2
        sdk.crons.delete(cid)
    finally:
        beat.stop()
