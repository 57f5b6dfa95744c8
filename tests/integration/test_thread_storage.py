"""`GET /threads/{id}/storage`: the bytes a thread's checkpoints occupy in
LangGraph's saver, by section, on PostgreSQL and on the embedded default."""

import uuid

import httpx
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

HI = {"messages": [{"type": "human", "content": "hi " * 200}]}


def storage(live_server, thread_id: str) -> httpx.Response:
    return httpx.get(f"{live_server.url}/threads/{thread_id}/storage")


def test_a_threads_storage_grows_with_its_checkpoints(sdk, live_server):
    thread = sdk.threads.create(graph_id="agent")["thread_id"]
    empty = storage(live_server, thread).json()
    assert empty == {
        "thread_id": thread,
        "total_bytes": 0,
        "checkpoints": {"count": 0, "bytes": 0},
        "channel_values": {"count": 0, "bytes": 0, "by_channel": {}},
        "pending_writes": {"count": 0, "bytes": 0},
    }

    sdk.threads.update_state(thread, HI, as_node="agent")
    once = storage(live_server, thread).json()
    sdk.threads.update_state(thread, HI, as_node="agent")
    twice = storage(live_server, thread).json()

    assert once["checkpoints"]["count"] >= 1 and once["checkpoints"]["bytes"] > 0
    assert twice["checkpoints"]["count"] > once["checkpoints"]["count"]
    assert twice["total_bytes"] > once["total_bytes"] > 0
    for answer in (once, twice):
        sections = ("checkpoints", "channel_values", "pending_writes")
        assert answer["total_bytes"] == sum(answer[s]["bytes"] for s in sections)
    channels = twice["channel_values"]
    if connection.vendor == "postgresql":  # one row per channel version
        assert channels["by_channel"]["messages"]["versions"] >= 2
        assert channels["by_channel"]["messages"]["bytes"] > 400  # the two long messages
        assert channels["count"] == sum(c["versions"] for c in channels["by_channel"].values())
    else:  # SqliteSaver keeps them inside the checkpoint rows
        assert channels == {"count": 0, "bytes": 0, "by_channel": {}}
        assert twice["checkpoints"]["bytes"] > 400


def test_an_unknown_or_malformed_thread_is_404_or_422(live_server):
    missing = storage(live_server, str(uuid.uuid4()))
    malformed = storage(live_server, "not-a-uuid")

    assert missing.status_code == 404 and "detail" in missing.json()
    assert malformed.status_code == 422 and "detail" in malformed.json()
