"""The threads endpoints (CRUD, search, state, history), through the official SDK.

No worker here: state is written with update_state, which needs no run."""

import uuid

import httpx
import pytest
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError

from threads.models import Thread

# available_apps: flush only these apps' tables between tests, which keeps the suite fast.
pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

FIELDS = {
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
    "error",
}
HI = {"messages": [{"type": "human", "content": "hi", "id": "m1"}]}


def test_create_returns_every_field_and_get_returns_the_same(sdk):
    thread_id = str(uuid.uuid4())

    created = sdk.threads.create(thread_id=thread_id, metadata={"owner": "ann", "n": 1})

    assert set(created) == FIELDS
    assert created["thread_id"] == thread_id
    assert created["metadata"] == {"owner": "ann", "n": 1}
    assert created["status"] == "idle"
    assert created["values"] is None
    assert created["interrupts"] == {}
    assert created["config"] == {}
    assert created["error"] is None
    assert sdk.threads.get(thread_id) == created


def test_create_defaults(sdk):
    created = sdk.threads.create()

    uuid.UUID(created["thread_id"])
    assert created["metadata"] == {}
    assert created["status"] == "idle"


def test_create_with_graph_id_puts_it_in_metadata(sdk):
    created = sdk.threads.create(graph_id="agent", metadata={"a": 1})

    assert created["metadata"] == {"a": 1, "graph_id": "agent"}


def test_create_if_exists_raise_conflicts_and_do_nothing_returns_the_existing_one(sdk):
    first = sdk.threads.create(metadata={"v": 1})

    with pytest.raises(ConflictError) as exc:
        sdk.threads.create(thread_id=first["thread_id"], metadata={"v": 2})
    same = sdk.threads.create(
        thread_id=first["thread_id"], metadata={"v": 2}, if_exists="do_nothing"
    )

    assert exc.value.message == f"Thread with ID {first['thread_id']} already exists"
    assert same == first
    assert Thread.objects.count() == 1


def test_patch_merges_metadata(sdk):
    created = sdk.threads.create(metadata={"a": 1, "b": 1})

    patched = sdk.threads.update(created["thread_id"], metadata={"b": 2, "c": 3})

    assert patched["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert patched["created_at"] == created["created_at"]
    assert patched["updated_at"] > created["updated_at"]
    assert sdk.threads.get(created["thread_id"]) == patched


def test_patch_return_minimal_is_204(sdk, live_server):
    created = sdk.threads.create()

    minimal = sdk.threads.update(created["thread_id"], metadata={"x": 1}, return_minimal=True)
    response = httpx.patch(
        f"{live_server.url}/threads/{created['thread_id']}",
        json={"metadata": {"y": 2}},
        headers={"Prefer": "return=minimal"},
    )

    assert minimal is None
    assert response.status_code == 204
    assert response.content == b""
    assert sdk.threads.get(created["thread_id"])["metadata"] == {"x": 1, "y": 2}


def test_delete_is_204_then_404(sdk, live_server):
    created = sdk.threads.create()

    response = httpx.delete(f"{live_server.url}/threads/{created['thread_id']}")

    assert response.status_code == 204
    assert response.content == b""
    with pytest.raises(NotFoundError) as exc:
        sdk.threads.get(created["thread_id"])
    assert exc.value.message == f"Thread with ID {created['thread_id']} not found"
    with pytest.raises(NotFoundError):
        sdk.threads.delete(created["thread_id"])
    assert Thread.objects.count() == 0


def test_search_filters_by_metadata_status_and_ids(sdk):
    a = sdk.threads.create(metadata={"team": "a", "tier": 1})
    b = sdk.threads.create(metadata={"team": "a", "tier": 2})
    c = sdk.threads.create(metadata={"team": "b"})
    Thread.objects.filter(pk=c["thread_id"]).update(status="error")

    assert [t["thread_id"] for t in sdk.threads.search(metadata={"team": "a"})] == [
        b["thread_id"],
        a["thread_id"],
    ]
    assert [t["thread_id"] for t in sdk.threads.search(metadata={"team": "a", "tier": 1})] == [
        a["thread_id"]
    ]
    assert [t["thread_id"] for t in sdk.threads.search(status="error")] == [c["thread_id"]]
    assert [t["thread_id"] for t in sdk.threads.search(status="idle")] == [
        b["thread_id"],
        a["thread_id"],
    ]
    assert {t["thread_id"] for t in sdk.threads.search(ids=[a["thread_id"], c["thread_id"]])} == {
        a["thread_id"],
        c["thread_id"],
    }
    assert sdk.threads.count() == 3
    assert sdk.threads.count(metadata={"team": "a"}) == 2
    assert sdk.threads.count(status="error") == 1


def test_search_filters_by_values(sdk):
    thread = sdk.threads.create(graph_id="agent")
    sdk.threads.create(graph_id="agent")
    sdk.threads.update_state(thread["thread_id"], HI, as_node="agent")

    found = sdk.threads.search(values={"messages": HI["messages"]})

    assert [t["thread_id"] for t in found] == [thread["thread_id"]]
    assert [m["content"] for m in found[0]["values"]["messages"]] == ["hi"]
    assert sdk.threads.count(values={"messages": HI["messages"]}) == 1


def test_search_paginates_sorts_and_selects(sdk):
    ids = sorted(str(uuid.uuid4()) for _ in range(4))
    for thread_id in ids:
        sdk.threads.create(thread_id=thread_id)

    asc = sdk.threads.search(sort_by="thread_id", sort_order="asc")
    desc = sdk.threads.search(sort_by="thread_id", sort_order="desc")
    page2 = sdk.threads.search(sort_by="thread_id", sort_order="asc", limit=3, offset=3)
    newest_first = sdk.threads.search()
    selected = sdk.threads.search(
        sort_by="thread_id", sort_order="asc", limit=1, select=["thread_id", "status"]
    )

    assert [t["thread_id"] for t in asc] == ids
    assert [t["thread_id"] for t in desc] == ids[::-1]
    assert [t["thread_id"] for t in page2] == ids[3:]
    assert [t["thread_id"] for t in newest_first] == ids[::-1]
    assert selected == [{"thread_id": ids[0], "status": "idle"}]


def test_search_pagination_headers_and_bare_count(sdk, live_server):
    for _ in range(3):
        sdk.threads.create()

    first = httpx.post(f"{live_server.url}/threads/search", json={"limit": 2})
    last = httpx.post(f"{live_server.url}/threads/search", json={"limit": 2, "offset": 2})
    count = httpx.post(f"{live_server.url}/threads/count", json={})

    assert first.headers["X-Pagination-Next"] == "2"
    assert first.headers["X-Pagination-Total"] == "3"
    assert "X-Pagination-Next" not in last.headers
    assert last.headers["X-Pagination-Total"] == "3"
    assert count.content == b"3"


def test_state_of_a_fresh_thread_is_empty(sdk):
    thread = sdk.threads.create()

    state = sdk.threads.get_state(thread["thread_id"])
    history = sdk.threads.get_history(thread["thread_id"])

    assert state == {
        "values": {},
        "next": [],
        "tasks": [],
        "checkpoint": None,
        "metadata": None,
        "created_at": None,
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }
    assert history == []


def test_update_state_then_get_state_and_history(sdk):
    thread = sdk.threads.create(graph_id="agent")
    thread_id = thread["thread_id"]

    first = sdk.threads.update_state(thread_id, HI, as_node="agent")
    second = sdk.threads.update_state(
        thread_id, {"messages": [{"type": "ai", "content": "yo", "id": "m2"}]}, as_node="agent"
    )
    state = sdk.threads.get_state(thread_id)
    history = sdk.threads.get_history(thread_id, limit=10)
    at_first = sdk.threads.get_state(thread_id, checkpoint_id=first["checkpoint"]["checkpoint_id"])
    # get_state(checkpoint=…) POSTs to /state/checkpoint.
    by_config = sdk.threads.get_state(thread_id, checkpoint=first["checkpoint"])
    assert by_config == at_first

    assert set(first) == {"checkpoint", "configurable", "checkpoint_id"}
    assert first["checkpoint"]["thread_id"] == thread_id
    assert first["checkpoint"]["checkpoint_ns"] == ""
    assert first["checkpoint_id"] == first["checkpoint"]["checkpoint_id"]
    assert first["configurable"] == first["checkpoint"]
    assert [m["content"] for m in state["values"]["messages"]] == ["hi", "yo"]
    assert state["next"] == []
    assert state["checkpoint"] == second["checkpoint"]
    assert state["checkpoint_id"] == second["checkpoint_id"]
    assert state["parent_checkpoint"]["checkpoint_id"] == first["checkpoint_id"]
    assert state["parent_checkpoint_id"] == first["checkpoint_id"]
    assert state["metadata"]["source"] == "update"
    assert [h["checkpoint_id"] for h in history] == [
        second["checkpoint_id"],
        first["checkpoint_id"],
    ]
    assert history[0] == state
    assert [m["content"] for m in at_first["values"]["messages"]] == ["hi"]
    assert sdk.threads.get(thread_id)["values"] == state["values"]


def test_history_limit_and_before(sdk, live_server):
    thread_id = sdk.threads.create(graph_id="agent")["thread_id"]
    checkpoints = [
        sdk.threads.update_state(
            thread_id,
            {"messages": [{"type": "human", "content": str(i), "id": str(i)}]},
            as_node="agent",
        )["checkpoint_id"]
        for i in range(3)
    ]

    one = sdk.threads.get_history(thread_id, limit=1)
    before = sdk.threads.get_history(thread_id, before={"checkpoint_id": checkpoints[2]})
    server_default = httpx.post(f"{live_server.url}/threads/{thread_id}/history", json={})
    by_get = httpx.get(f"{live_server.url}/threads/{thread_id}/history", params={"limit": 2})

    assert [h["checkpoint_id"] for h in one] == [checkpoints[2]]
    assert [h["checkpoint_id"] for h in before] == [checkpoints[1], checkpoints[0]]
    assert [h["checkpoint_id"] for h in server_default.json()] == [checkpoints[2]]
    assert [h["checkpoint_id"] for h in by_get.json()] == [checkpoints[2], checkpoints[1]]


def test_update_state_on_a_thread_without_graph_is_400(sdk):
    thread = sdk.threads.create()

    with pytest.raises(BadRequestError) as exc:
        sdk.threads.update_state(thread["thread_id"], HI)

    assert exc.value.message.startswith(f"Thread '{thread['thread_id']}' has no assigned graph ID.")
    assert sdk.threads.get_state(thread["thread_id"])["checkpoint"] is None


def test_update_state_as_an_unknown_node_is_400(sdk):
    thread = sdk.threads.create(graph_id="agent")

    with pytest.raises(BadRequestError):
        sdk.threads.update_state(thread["thread_id"], HI, as_node="nope")

    assert sdk.threads.get_state(thread["thread_id"])["checkpoint"] is None


def test_delete_removes_the_threads_state(sdk):
    thread_id = sdk.threads.create(graph_id="agent")["thread_id"]
    sdk.threads.update_state(thread_id, HI, as_node="agent")

    sdk.threads.delete(thread_id)
    sdk.threads.create(thread_id=thread_id, graph_id="agent")

    assert sdk.threads.get_state(thread_id)["checkpoint"] is None
