"""The store through the official SDK (`client.store.*`) and over HTTP: LangGraph's
long-term memory, as the LangGraph Server serves it (store.apis)."""

import json
import time
import uuid

import httpx
import pytest

from cronsvc.selectors import assistant_get_or_404
from runs import tasks
from runs.models import Run
from runs.services import run_create
from store import backend
from store.backend import get_store
from threads.services import thread_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ns():
    # Store tables are LangGraph's, not Django's: the test database keeps their
    # rows between tests, so each test writes under a namespace of its own.
    return ["test", uuid.uuid4().hex]


def test_put_get_search_delete_through_the_sdk(sdk, ns):
    sdk.store.put_item(ns, "a", {"topic": "cats", "n": 1})
    sdk.store.put_item([*ns, "deeper"], "b", {"topic": "dogs", "n": 2})

    item = sdk.store.get_item(ns, "a")
    assert item["namespace"] == ns
    assert item["key"] == "a"
    assert item["value"] == {"topic": "cats", "n": 1}
    assert item["created_at"] and item["updated_at"]

    found = sdk.store.search_items(ns)["items"]
    assert {i["key"] for i in found} == {"a", "b"}
    only_dogs = sdk.store.search_items(ns, filter={"topic": "dogs"})["items"]
    assert [i["key"] for i in only_dogs] == ["b"]
    assert len(sdk.store.search_items(ns, limit=1)["items"]) == 1
    assert len(sdk.store.search_items(ns, limit=1, offset=1)["items"]) == 1

    spaces = sdk.store.list_namespaces(prefix=ns)["namespaces"]
    assert sorted(spaces) == [ns, [*ns, "deeper"]]
    assert sdk.store.list_namespaces(prefix=ns, max_depth=2)["namespaces"] == [ns]
    assert sdk.store.list_namespaces(prefix=ns, suffix=["deeper"])["namespaces"] == [
        [*ns, "deeper"]
    ]

    sdk.store.put_item(ns, "a", {"topic": "cats", "n": 3})
    assert sdk.store.get_item(ns, "a")["value"]["n"] == 3

    sdk.store.delete_item(ns, "a")
    assert sdk.store.get_item(ns, "a") is None


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "detail"),
    [
        (
            "put",
            "/store/items",
            {"json": {"namespace": ["a.b"], "key": "k", "value": {}}},
            "periods",
        ),
        ("put", "/store/items", {"json": {"namespace": [""], "key": "k", "value": {}}}, "empty"),
        ("put", "/store/items", {"json": {"namespace": [], "key": "k", "value": {}}}, "empty"),
        ("put", "/store/items", {"json": {"namespace": ["a"], "key": "k", "value": [1]}}, "object"),
        ("put", "/store/items", {"json": {"namespace": ["a"], "value": {}}}, "key"),
        (
            "put",
            "/store/items",
            {"json": {"namespace": ["langgraph"], "key": "k", "value": {}}},
            "langgraph",
        ),
        ("get", "/store/items", {"params": {"namespace": "a"}}, "key"),
        ("get", "/store/items", {"params": {"namespace": "a..b", "key": "k"}}, "periods"),
        (
            "post",
            "/store/items/search",
            {"json": {"namespace_prefix": ["a"], "limit": -1}},
            "limit",
        ),
        ("post", "/store/namespaces", {"json": {"max_depth": 0}}, "max_depth"),
        ("post", "/store/namespaces", {"json": {"prefix": "a"}}, "prefix"),
    ],
)
def test_bad_requests_are_422_and_write_nothing(live_server, method, path, kwargs, detail):
    response = httpx.request(method.upper(), f"{live_server.url}{path}", **kwargs)
    assert response.status_code == 422, response.text
    assert detail in str(response.json()["detail"]).lower()
    assert get_store().search(("a",)) == []
    assert get_store().search(("langgraph",)) == []


@pytest.mark.usefixtures("parked_runs")
def test_a_graph_run_gets_the_store():
    memory = assistant_get_or_404("memory")
    get_store().delete(("runs", str(memory.assistant_id)), "count")
    for expected in (1, 2):
        run = run_create(
            thread=thread_create(), assistant=memory, kwargs={"input": {"messages": []}}
        )
        assert tasks.drain(str(run.thread_id)) == 1
        run.refresh_from_db()
        assert run.status == Run.Status.SUCCESS, run.error
        assert run.output["messages"][-1]["content"] == f"This is run {expected}."
    item = get_store().get(("runs", str(memory.assistant_id)), "count")
    assert item.value == {"count": 2}


def test_info_is_public_and_names_the_features(live_server, settings):
    settings.CRONSVC_API_KEYS = ["k1"]
    for headers in ({}, {"x-api-key": "wrong"}):
        response = httpx.get(f"{live_server.url}/info", headers=headers)
        assert response.status_code == 200
        info = response.json()
        assert info["flags"]["assistants"] is True
        assert info["flags"]["crons"] is True
        assert info["flags"]["store"] is True
        assert info["version"]
        assert info["langgraph_py_version"].startswith("1.")
    with pytest.raises(httpx.HTTPStatusError):
        httpx.get(f"{live_server.url}/store/items", params={"key": "k"}).raise_for_status()


def test_items_expire_with_a_ttl_and_beat_sweeps_them(settings, tmp_path, ns):
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "graphs": {"agent": "./examples/agent.py:graph"},
                "store": {"ttl": {"default_ttl": 0.002, "refresh_on_read": False}},
            }
        )
    )
    settings.LANGGRAPH_CONFIG = config
    backend.store_config.cache_clear()
    backend.reset()
    try:
        assert backend.store_config()["ttl"]["default_ttl"] == 0.002
        store = backend.get_store()
        store.put(tuple(ns), "short", {"v": 1})  # 0.12 s
        store.put(tuple(ns), "long", {"v": 2}, ttl=10)
        time.sleep(2.2)  # SQLite compares expiry to CURRENT_TIMESTAMP, whole seconds
        assert backend.store_sweep() >= 1
        assert store.get(tuple(ns), "short") is None
        assert store.get(tuple(ns), "long").value == {"v": 2}
    finally:
        backend.store_config.cache_clear()
        backend.reset()
