"""The SDK helper (cronsvc_client) against the live server, sync and async:
trigger, backfill, ticks (with the total) and schedule answer what the
endpoints answer, and errors come back as the SDK raises them.

Runs made here stay pending (`parked_runs`): no worker takes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from django.utils import timezone as djtz
from langgraph_sdk import get_client

from crons import firetime
from crons.models import Tick
from cronsvc_client import AsyncCronControl, CronControl

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def past_hour() -> tuple[dt.datetime, dt.datetime]:
    end = djtz.now().replace(microsecond=0) - dt.timedelta(seconds=1)
    return end - dt.timedelta(hours=1), end


def test_sync_helper_against_the_server(sdk, parked_runs):
    control = CronControl(sdk)
    cron = sdk.crons.create("agent", schedule="*/10 * * * *", input=QUESTION, enabled=False)
    cid = cron["cron_id"]
    start, end = past_hour()
    instants = firetime.next_fires("*/10 * * * *", None, start - dt.timedelta(microseconds=1), 6)

    run = control.trigger(cid)
    assert run["status"] == "pending" and run["metadata"] == {"cron_id": cid}
    assert control.backfill(cid, start, end) == {
        "instants": 6,
        "fired": 6,
        "already_fired": 0,
        "rejected": 0,
        "skipped": 0,
    }
    # Naive times are UTC; a second identical backfill fires nothing.
    naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))
    assert control.backfill(cid, *naive)["already_fired"] == 6
    # With an overlap policy for the backfill: skip fires the first instant only.
    other = sdk.crons.create("agent", schedule="*/10 * * * *")["cron_id"]
    report = control.backfill(other, start, end, overlap_policy="skip")
    assert (report["fired"], report["skipped"]) == (1, 5)

    ticks = control.ticks(cid, limit=3)
    assert [(t["kind"], t["status"], t["run_status"], t["attempts"]) for t in ticks] == [
        ("manual", "fired", "pending", 0),
        ("backfill", "fired", "pending", 0),
        ("backfill", "fired", "pending", 0),
    ]
    assert ticks[0]["run_id"] == run["run_id"]
    assert [t["scheduled_at"] for t in ticks[1:]] == [
        instants[5].isoformat(),
        instants[4].isoformat(),
    ]
    page = control.ticks_page(cid, limit=2, offset=5, status="fired")
    assert page["total"] == 7
    assert [t["scheduled_at"] for t in page["ticks"]] == [i.isoformat() for i in instants[1::-1]]
    assert Tick.objects.filter(cron_id=cid).count() == 7

    schedule = control.schedule(cid, limit=3)
    assert schedule["timezone"] == "UTC"
    nexts = [dt.datetime.fromisoformat(t) for t in schedule["next"]]
    assert len(nexts) == 3 and nexts[0] > djtz.now() - dt.timedelta(seconds=5)
    assert all(t.minute % 10 == 0 and t.second == 0 for t in nexts)

    # Errors are the SDK's, with the server's detail.
    with pytest.raises(httpx.HTTPStatusError) as invalid:
        control.backfill(cid, end, start)
    assert invalid.value.response.status_code == 422
    assert "must be before end" in invalid.value.response.json()["detail"]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        control.schedule("7e0f8a52-6fd3-4c59-9d57-e0b1f6f4e8a5")
    assert missing.value.response.status_code == 404


def test_async_helper_against_the_server(sdk, asdk_url, parked_runs):
    cron = sdk.crons.create("agent", schedule="*/10 * * * *", input=QUESTION)
    cid = cron["cron_id"]
    start, end = past_hour()

    async def main():
        control = AsyncCronControl(get_client(url=asdk_url, api_key=None))
        run = await control.trigger(cid)
        report = await control.backfill(cid, start, end)
        again = await control.backfill(cid, start.isoformat(), end.isoformat())
        page = await control.ticks_page(cid, limit=10)
        schedule = await control.schedule(cid, limit=2)
        return run, report, again, page, schedule

    run, report, again, page, schedule = asyncio.run(main())

    assert run["status"] == "pending"
    assert (report["fired"], again["fired"], again["already_fired"]) == (6, 0, 6)
    assert page["total"] == 7
    assert [t["kind"] for t in page["ticks"]] == ["manual"] + ["backfill"] * 6
    assert page["ticks"][0]["run_id"] == run["run_id"]
    assert len(schedule["next"]) == 2
