"""The cron flow and a streamed run through the official JS SDK
(@langchain/langgraph-sdk) against a live server."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
JS = Path(__file__).parents[1] / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_cron_flow(live_server):
    assert (JS / "node_modules" / "@langchain" / "langgraph-sdk").exists(), (
        "run scripts/test.sh, which installs the JS SDK with npm"
    )
    out = subprocess.run(
        ["node", str(JS / "cron_flow.mjs"), live_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["on_thread"]["thread_id"] == result["thread_id"]
    assert result["on_thread"]["timezone"] == "Europe/Paris"
    assert result["stateless"]["on_run_completed"] == "delete"
    assert result["updated_schedule"] == "0 8 * * 1-5"
    assert result["found"] == [result["on_thread"]["cron_id"]]
    assert result["count"] == 2
    assert "422" in result["error"] and "Invalid cron schedule 'not a cron'" in result["error"]
    assert result["after"] == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_streams_a_run_and_replays_it(live_server, worker):
    out = subprocess.run(
        ["node", str(JS / "stream_flow.mjs"), live_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    streamed = result["streamed"]
    assert streamed[0]["event"] == "metadata"
    assert {p["event"] for p in streamed[1:]} == {"values", "updates"}
    final = [p["data"] for p in streamed if p["event"] == "values"][-1]
    assert [m["type"] for m in final["messages"]] == ["human", "ai"]
    assert result["replayed"] == streamed
    assert result["status"] == "success"
