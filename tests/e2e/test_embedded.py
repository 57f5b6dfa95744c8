"""The embedded default: `manage.py dev` on SQLite with kombu's filesystem
broker, no PostgreSQL or Redis, started as the README says."""

import asyncio
import datetime as dt
import os
import signal
import sys
import time

import httpx
import pytest
from langgraph_sdk import get_client

from tests.conftest import ROOT, Proc, wait_until
from tests.e2e.test_webhooks import Receiver
from tests.factories import free_port

pytestmark = pytest.mark.slow
QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


@pytest.fixture
def dev_server(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE")
    }
    env.update(
        {
            "CRONSVC_DATA_DIR": str(tmp_path / "data"),
            "PYTHONUNBUFFERED": "1",
            "CRONSVC_WEBHOOK_ALLOWLIST": "127.0.0.1",
        }
    )
    # The README's run command, as a user types it.
    proc = Proc(["bash", "scripts/dev.sh", "--port", str(port)], env, "scripts/dev.sh")
    proc.wait_for("cronsvc API on", timeout=90)
    proc.wait_for("ready.", timeout=60)  # the worker
    yield proc, f"http://127.0.0.1:{port}", tmp_path / "data"
    proc.stop(signal.SIGTERM, timeout=30)


def test_dev_server_on_sqlite_serves_runs_and_fires_crons(dev_server):
    proc, url, data = dev_server
    assert (data / "cronsvc.sqlite3").exists()
    assert "loopback only" in proc.output()

    async def flow():
        client = get_client(url=url, api_key=None)
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], "agent", input=QUESTION)
        values = await client.runs.join(thread["thread_id"], run["run_id"])
        every_minute = await client.crons.create_for_thread(
            thread["thread_id"], "agent", schedule="* * * * *", input=QUESTION
        )
        # 50 concurrent cron writes against one SQLite file.
        results = await asyncio.gather(
            *[
                client.crons.create("agent", schedule=f"{i % 60} 3 * * *", metadata={"i": i})
                for i in range(50)
            ],
            return_exceptions=True,
        )
        count = await client.crons.count()
        return thread, values, every_minute, results, count

    thread, values, every_minute, results, count = asyncio.run(flow())
    assert values["messages"][-1]["content"].startswith("It is ")
    assert [r for r in results if isinstance(r, Exception)] == []
    assert count == 51
    out = proc.output()
    assert "database is locked" not in out
    assert " 500 " not in out and "Internal Server Error" not in out

    # The every-minute cron fires at the next boundary on the embedded default too.
    boundary = dt.datetime.fromisoformat(every_minute["next_run_date"])
    deadline = boundary + dt.timedelta(seconds=45)
    runs = []
    while dt.datetime.now(dt.UTC) < deadline:
        runs = httpx.get(f"{url}/threads/{thread['thread_id']}/runs").json()
        if len(runs) == 2 and runs[0]["status"] == "success":
            break
        time.sleep(1)
    assert len(runs) == 2 and runs[0]["status"] == "success", runs
    assert runs[0]["metadata"]["cron_id"] == every_minute["cron_id"]

    # dev starts a webhook worker: deliveries (their own queue) happen here too.
    receiver = Receiver()
    try:
        hooked = httpx.post(
            f"{url}/threads/{thread['thread_id']}/runs",
            json={"assistant_id": "agent", "input": QUESTION, "webhook": receiver.url},
        ).json()
        outcome = f"{url}/threads/{thread['thread_id']}/runs/{hooked['run_id']}/webhook"
        wait_until(lambda: httpx.get(outcome).json()["status"] == "delivered", timeout=60)
        assert [r["body"]["run_id"] for r in receiver.requests] == [hooked["run_id"]]
    finally:
        receiver.close()

    proc.stop(signal.SIGTERM, timeout=30)
    assert proc.popen.returncode == 0
    assert "Traceback" not in proc.output()


def test_dev_refuses_a_public_bind_without_api_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["CRONSVC_DATA_DIR"] = str(tmp_path)
    import subprocess

    done = subprocess.run(
        [sys.executable, "manage.py", "dev", "--host", "0.0.0.0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "only binds to loopback" in done.stderr
