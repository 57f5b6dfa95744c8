"""The cron flow and a streamed run through the official JS SDK
(@langchain/langgraph-sdk) against a live server."""

import json
import shutil
import subprocess
import uuid
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


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_store_and_assistant_versions(live_server):
    tag = uuid.uuid4().hex
    out = subprocess.run(
        ["node", str(JS / "store_versions_flow.mjs"), live_server.url, tag],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    ns = ["js", tag]

    got = result["got"]
    assert (got["namespace"], got["key"], got["value"]) == (ns, "k1", {"topic": "cats", "n": 3})
    assert got["createdAt"] == got["created_at"] and got["updatedAt"] == got["updated_at"]
    assert got["updated_at"] >= got["created_at"]
    assert {(i["key"], tuple(i["namespace"])) for i in result["searched"]} == {
        ("k1", tuple(ns)),
        ("k2", (*ns, "deeper")),
    }
    assert result["dogs"] == ["k2"]
    assert sorted(result["spaces"]) == [ns, [*ns, "deeper"]]
    assert result["shallow"] == [ns]
    assert result["after_delete"] is None

    assistant_id = result["assistant"]["assistant_id"]
    assert result["assistant"]["version"] == 1
    assert (result["updated"]["version"], result["updated"]["name"]) == (2, f"v2-{tag}")
    versions = result["versions"]
    assert [(v["version"], v["name"]) for v in versions] == [(2, f"v2-{tag}"), (1, f"v1-{tag}")]
    assert {v["assistant_id"] for v in versions} == {assistant_id}
    assert [v["config"]["configurable"]["answer"] for v in versions] == [2, 1]
    assert [v["version"] for v in result["only_first"]] == [2]
    latest = result["latest"]
    assert (latest["assistant_id"], latest["version"], latest["name"]) == (
        assistant_id,
        1,
        f"v1-{tag}",
    )
    assert latest["config"]["configurable"]["answer"] == 1
    assert latest["metadata"] == {"tag": tag}
    assert (result["fetched"]["version"], result["fetched"]["name"]) == (1, f"v1-{tag}")
