"""The SDK helper (cronsvc_client): it imports no Django, and each call sends
what the endpoint takes and types what it answers (against a stub transport;
tests/integration/test_cronsvc_client.py runs it against the live server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import HttpClient, SyncHttpClient

from cronsvc_client import AsyncCronControl, CronControl

ROOT = Path(__file__).resolve().parents[2]
CRON = "7e0f8a52-6fd3-4c59-9d57-e0b1f6f4e8a5"
TICK = {
    "scheduled_at": "2026-11-30T08:00:00+00:00",
    "fire_at": "2026-11-30T08:00:00+00:00",
    "kind": "backfill",
    "status": "fired",
    "reason": "backfilled",
    "run_id": "1f0c7a3e-0000-0000-0000-000000000001",
    "run_status": "success",
    "attempts": 1,
    "created_at": "2026-11-30T09:00:01+00:00",
}


def test_importing_it_imports_no_django():
    code = (
        "import json, sys\n"
        "import cronsvc_client\n"
        "from cronsvc_client import CronControl, AsyncCronControl, Tick\n"
        "server = [m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'celery', 'cronsvc', 'crons', 'runs', 'threads', 'store')]\n"
        "print(json.dumps(server))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


class Stub:
    """Answers as the endpoints do, and keeps the requests."""

    def __init__(self):
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/trigger"):
            return httpx.Response(200, json={"run_id": "r1", "status": "pending"})
        if path.endswith("/backfill"):
            return httpx.Response(
                200, json={"instants": 6, "fired": 6, "already_fired": 0, "rejected": 0}
            )
        if path.endswith("/ticks"):
            return httpx.Response(200, json=[TICK], headers={"X-Pagination-Total": "7"})
        if path.endswith("/schedule"):
            return httpx.Response(
                200, json={"timezone": "UTC", "next": ["2026-11-30T09:10:00+00:00"]}
            )
        return httpx.Response(404, json={"detail": "Not found"})


def sent(request: httpx.Request) -> tuple[str, str, dict, object]:
    body = json.loads(request.content) if request.content else None
    return request.method, request.url.path, dict(request.url.params), body


EXPECTED = [
    ("POST", f"/runs/crons/{CRON}/trigger", {}, {}),
    (
        "POST",
        f"/runs/crons/{CRON}/backfill",
        {},
        # A naive datetime is UTC; a string goes as it is.
        {"start": "2026-11-30T08:00:00+00:00", "end": "2026-11-30T09:00:00Z"},
    ),
    ("GET", f"/runs/crons/{CRON}/ticks", {"limit": "20", "offset": "0", "status": "fired"}, None),
    ("GET", f"/runs/crons/{CRON}/ticks", {"limit": "1", "offset": "5"}, None),
    ("GET", f"/runs/crons/{CRON}/schedule", {"limit": "3"}, None),
]


def test_sync_calls_send_what_the_endpoints_take():
    stub = Stub()
    sdk = get_sync_client(url="http://cronsvc.test", api_key=None)
    sdk.http.client = httpx.Client(
        base_url="http://cronsvc.test", transport=httpx.MockTransport(stub)
    )
    control = CronControl(sdk)

    assert control.trigger(CRON)["run_id"] == "r1"
    report = control.backfill(CRON, dt.datetime(2026, 11, 30, 8), "2026-11-30T09:00:00Z")
    assert report == {"instants": 6, "fired": 6, "already_fired": 0, "rejected": 0}
    assert control.ticks(CRON, limit=20, status="fired") == [TICK]
    assert control.ticks_page(CRON, limit=1, offset=5) == {"ticks": [TICK], "total": 7}
    assert control.schedule(CRON, limit=3)["next"] == ["2026-11-30T09:10:00+00:00"]
    assert [sent(r) for r in stub.requests] == EXPECTED
    # Its .http works as well as the client.
    assert CronControl(sdk.http).http is sdk.http
    assert isinstance(CronControl(sdk).http, SyncHttpClient)


def test_async_calls_send_what_the_endpoints_take():
    stub = Stub()

    async def main():
        sdk = get_client(url="http://cronsvc.test", api_key=None)
        sdk.http.client = httpx.AsyncClient(
            base_url="http://cronsvc.test", transport=httpx.MockTransport(stub)
        )
        control = AsyncCronControl(sdk)
        assert isinstance(control.http, HttpClient)
        assert (await control.trigger(CRON))["run_id"] == "r1"
        report = await control.backfill(
            CRON, dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), "2026-11-30T09:00:00Z"
        )
        assert report["fired"] == 6
        assert await control.ticks(CRON, limit=20, status="fired") == [TICK]
        assert await control.ticks_page(CRON, limit=1, offset=5) == {"ticks": [TICK], "total": 7}
        assert (await control.schedule(CRON, limit=3))["timezone"] == "UTC"
        with pytest.raises(httpx.HTTPStatusError):
            await AsyncCronControl(sdk.http).http.get("/nowhere")

    asyncio.run(main())
    assert [sent(r) for r in stub.requests][:5] == EXPECTED


def test_trigger_sends_a_one_off_overlap_policy():
    stub = Stub()
    sdk = get_sync_client(url="http://cronsvc.test", api_key=None)
    sdk.http.client = httpx.Client(
        base_url="http://cronsvc.test", transport=httpx.MockTransport(stub)
    )
    CronControl(sdk).trigger(CRON, overlap_policy="buffer_one")

    async def main():
        asdk = get_client(url="http://cronsvc.test", api_key=None)
        asdk.http.client = httpx.AsyncClient(
            base_url="http://cronsvc.test", transport=httpx.MockTransport(stub)
        )
        await AsyncCronControl(asdk).trigger(CRON, overlap_policy="skip")

    asyncio.run(main())
    assert [sent(r)[3] for r in stub.requests] == [
        {"overlap_policy": "buffer_one"},
        {"overlap_policy": "skip"},
    ]
