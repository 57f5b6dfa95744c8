"""Every method of langgraph_sdk's assistants, threads, runs, crons and store
clients, called with valid arguments on objects the test created, each answer's
shape checked: on the embedded default (`manage.py dev`, SQLite and kombu's
filesystem broker, its own worker) and on PostgreSQL (the live server and the
session's worker).

The methods are listed by introspecting the SDK's client classes, and the test
asserts that the set it called is that set: a method a new SDK adds fails it
until it is covered here. `threads.stream` (the v3 thread-centric streaming
session, not part of the LangGraph Server HTTP API cronsvc speaks) is left out.

Nothing here can hang: the SDK client has an HTTP timeout, every stream is
read in a helper thread bounded by a deadline and left at its `end` event, and
the whole test runs under an alarm (SIGALRM; pytest-timeout is not installed).
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from langgraph_sdk import client as sdk_client
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import NotFoundError

from tests.conftest import Proc
from tests.factories import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLIENTS = {
    "assistants": sdk_client.AssistantsClient,
    "threads": sdk_client.ThreadsClient,
    "runs": sdk_client.RunsClient,
    "crons": sdk_client.CronClient,
    "store": sdk_client.StoreClient,
}
SYNC_CLIENTS = {
    "assistants": sdk_client.SyncAssistantsClient,
    "threads": sdk_client.SyncThreadsClient,
    "runs": sdk_client.SyncRunsClient,
    "crons": sdk_client.SyncCronClient,
    "store": sdk_client.SyncStoreClient,
}
# Not the LangGraph Server HTTP API: the v3 thread-centric session (SDK 0.4.x).
LEFT_OUT = {"threads.stream"}
QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
SLOW_SECONDS = 3  # how long the run cancelled while running sleeps in its node
TEST_SECONDS = 240  # the whole test, under SIGALRM
CALL_SECONDS = 60  # each HTTP call (httpx timeout)
STREAM_SECONDS = 60  # each stream, read to its end

ASSISTANT_FIELDS = {
    "assistant_id",
    "graph_id",
    "config",
    "metadata",
    "name",
    "created_at",
    "updated_at",
    "version",
}
THREAD_FIELDS = {"thread_id", "created_at", "updated_at", "metadata", "status", "values"}
RUN_FIELDS = {
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "multitask_strategy",
}
CRON_FIELDS = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "schedule",
    "payload",
    "created_at",
    "updated_at",
    "next_run_date",
    "metadata",
}
STATE_FIELDS = {"values", "next", "checkpoint", "metadata", "created_at", "parent_checkpoint"}
ITEM_FIELDS = {"namespace", "key", "value", "created_at", "updated_at"}


def sdk_methods(classes: dict[str, type]) -> set[str]:
    return {
        f"{name}.{method}"
        for name, cls in classes.items()
        for method, _ in inspect.getmembers(cls, inspect.isfunction)
        if not method.startswith("_")
    }


def test_the_sync_and_async_clients_have_the_same_methods():
    assert sdk_methods(SYNC_CLIENTS) == sdk_methods(CLIENTS)
    assert len(sdk_methods(CLIENTS) - LEFT_OUT) == 45


class Recorded:
    """A sub-client (client.runs, …) that records each public method called."""

    def __init__(self, target: Any, name: str, called: set[str]):
        self._target, self._name, self._called = target, name, called

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if callable(value) and not attr.startswith("_"):
            self._called.add(f"{self._name}.{attr}")
        return value


class RecordedClient:
    def __init__(self, url: str):
        self.called: set[str] = set()
        client = get_sync_client(url=url, api_key=None, timeout=httpx.Timeout(CALL_SECONDS))
        for name in CLIENTS:
            setattr(self, name, Recorded(getattr(client, name), name, self.called))


def read_stream(
    parts: Iterable[Any], *, until: Callable[[list], bool], seconds: float = STREAM_SECONDS
) -> list:
    """The parts of a stream read in a helper thread until `until(parts)` or the
    stream ends, failing after `seconds`."""
    got: list = []
    errors: list[BaseException] = []

    def read() -> None:
        iterator: Iterator = iter(parts)
        try:
            for part in iterator:
                got.append(part)
                if until(got):
                    break
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    assert not reader.is_alive(), f"stream still open after {seconds} s: {got}"
    if errors:
        raise errors[0]
    return got


def ended(parts: list) -> bool:
    return any(p.event == "end" for p in parts)


@contextmanager
def alarm(seconds: int):
    """Fail the test (TimeoutError in the main thread) after `seconds`."""

    def expired(signum, frame):
        raise TimeoutError(f"the test took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def embedded_url(tmp_path):
    """`manage.py dev` on SQLite (no DATABASE_URL): API, a worker and the
    webhook worker, as test_embedded starts it; stopped with SIGTERM."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE")
    }
    env.update({"CRONSVC_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"})
    proc = Proc([sys.executable, "manage.py", "dev", "--port", str(port), "--no-beat"], env, "dev")
    try:
        proc.wait_for("cronsvc API on", timeout=90)
        proc.wait_for("ready.", timeout=60)  # the worker
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop(signal.SIGTERM, timeout=30)
    assert (tmp_path / "data" / "cronsvc.sqlite3").exists()
    assert "Traceback" not in proc.output(), proc.output()[-5000:]


@pytest.fixture(params=["sqlite", "postgres"])
def server_url(request):
    if request.param == "sqlite":
        return request.getfixturevalue("embedded_url")
    request.getfixturevalue("worker")
    return request.getfixturevalue("live_server").url


def test_every_sdk_method_works(server_url):
    expected = sdk_methods(CLIENTS) - LEFT_OUT
    client = RecordedClient(server_url)
    with alarm(TEST_SECONDS):
        exercise(client, uuid.uuid4().hex)
    missing, extra = expected - client.called, client.called - expected
    print(f"\n{len(client.called & expected)} of {len(expected)} SDK methods work")
    assert (missing, extra) == (set(), set())
    assert len(client.called) == 45


def exercise(c: RecordedClient, tag: str) -> None:
    # --- assistants ---------------------------------------------------------------------------
    assistant = c.assistants.create(
        "agent", config={"configurable": {"tag": tag}}, metadata={"suite": tag}, name=f"a-{tag}"
    )
    assert set(assistant) >= ASSISTANT_FIELDS
    aid = assistant["assistant_id"]
    assert (assistant["graph_id"], assistant["version"]) == ("agent", 1)
    assert c.assistants.get(aid)["name"] == f"a-{tag}"
    updated = c.assistants.update(aid, metadata={"suite": tag, "v": 2}, name=f"b-{tag}")
    assert (updated["version"], updated["name"]) == (2, f"b-{tag}")
    versions = c.assistants.get_versions(aid)
    assert sorted(v["version"] for v in versions) == [1, 2]
    assert all({"assistant_id", "version", "config", "metadata"} <= set(v) for v in versions)
    latest = c.assistants.set_latest(aid, 1)
    assert (latest["version"], latest["name"]) == (1, f"a-{tag}")
    graph = c.assistants.get_graph(aid)
    assert {"nodes", "edges"} <= set(graph)
    assert "agent" in {node["id"] for node in graph["nodes"]}
    schemas = c.assistants.get_schemas(aid)
    assert {"graph_id", "input_schema", "output_schema", "state_schema", "config_schema"} <= set(
        schemas
    )
    assert schemas["graph_id"] == "agent"
    assert c.assistants.get_subgraphs(aid) == {}
    assert [a["assistant_id"] for a in c.assistants.search(metadata={"suite": tag})] == [aid]
    assert c.assistants.count(metadata={"suite": tag}) == 1

    # --- threads and runs executed by the worker ----------------------------------------------
    thread = c.threads.create(metadata={"suite": tag})
    assert set(thread) >= THREAD_FIELDS
    tid = thread["thread_id"]
    assert c.threads.get(tid)["thread_id"] == tid
    patched = c.threads.update(tid, metadata={"step": "patched"})
    assert patched["metadata"] == {"suite": tag, "step": "patched"}

    run = c.runs.create(tid, aid, input=QUESTION, metadata={"suite": tag})
    assert set(run) >= RUN_FIELDS
    assert (run["thread_id"], run["assistant_id"]) == (tid, aid)
    joined = c.runs.join(tid, run["run_id"])
    assert joined["messages"][-1]["content"].startswith("It is ")
    done = c.runs.get(tid, run["run_id"])
    assert set(done) >= RUN_FIELDS and done["status"] == "success"

    waited = c.runs.wait(tid, aid, input=QUESTION)
    assert [m["type"] for m in waited["messages"]] == ["human", "ai", "human", "ai"]

    streamed = read_stream(
        c.runs.stream(tid, aid, input=QUESTION, stream_mode=["values"], stream_resumable=True),
        until=ended,
    )
    assert streamed[0].event == "metadata"
    streamed_run_id = streamed[0].data["run_id"]
    values = [p.data for p in streamed if p.event == "values"]
    assert len(values[-1]["messages"]) == 6
    replayed = read_stream(
        c.runs.join_stream(tid, streamed_run_id, last_event_id="-1"), until=ended
    )
    assert [p.data for p in replayed if p.event == "values"] == values

    # The thread's recorded events (the streamed run's), replayed from the first.
    thread_events = read_stream(c.threads.join_stream(tid, last_event_id="-1"), until=ended)
    assert thread_events[0].event == "metadata"
    assert thread_events[0].data["run_id"] == streamed_run_id
    assert [p.data["run_id"] for p in thread_events if p.event == "end"] == [streamed_run_id]

    listed = c.runs.list(tid)
    assert len(listed) == 3 and all(set(r) >= RUN_FIELDS for r in listed)
    assert {r["status"] for r in listed} == {"success"}
    assert run["run_id"] in {r["run_id"] for r in listed}

    state = c.threads.get_state(tid)
    assert set(state) >= STATE_FIELDS
    assert len(state["values"]["messages"]) == 6
    note = {"messages": [{"type": "ai", "content": "A note.", "id": f"note-{tag}"}]}
    update = c.threads.update_state(tid, note, as_node="agent")
    assert update["checkpoint"]["thread_id"] == tid
    assert update["checkpoint"]["checkpoint_id"]
    history = c.threads.get_history(tid, limit=3)
    assert len(history) == 3 and all(set(s) >= STATE_FIELDS for s in history)
    assert history[0]["values"]["messages"][-1]["content"] == "A note."

    copied = c.threads.copy(tid)
    assert set(copied) >= THREAD_FIELDS and copied["thread_id"] != tid
    assert c.threads.get_state(copied["thread_id"])["values"] == c.threads.get_state(tid)["values"]
    assert c.threads.count(metadata={"suite": tag}) == 2
    found = c.threads.search(metadata={"suite": tag})
    assert {t["thread_id"] for t in found} == {tid, copied["thread_id"]}
    assert all(set(t) >= THREAD_FIELDS for t in found)
    assert c.threads.prune([copied["thread_id"]]) == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        c.threads.get(copied["thread_id"])

    c.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        c.runs.get(tid, run["run_id"])

    # --- a running run and one queued behind it, cancelled --------------------------------------
    # The slow graph sleeps `seconds` in its one node; a cancel is seen between steps.
    busy = c.threads.create(metadata={"suite": tag})["thread_id"]
    slow = {"configurable": {"seconds": SLOW_SECONDS}}
    first = c.runs.create(busy, "slow", input=QUESTION, config=slow)
    queued = c.runs.create(busy, "slow", input=QUESTION, multitask_strategy="enqueue")
    assert (first["status"], queued["status"]) == ("pending", "pending")
    c.runs.cancel_many(thread_id=busy, run_ids=[queued["run_id"]])
    assert c.runs.get(busy, queued["run_id"])["status"] == "interrupted"
    c.runs.cancel(busy, first["run_id"], wait=True)
    assert c.runs.get(busy, first["run_id"])["status"] == "interrupted"

    # Stateless runs, their threads kept (on_completion) to join them.
    batch = c.runs.create_batch(
        [
            {"assistant_id": aid, "input": QUESTION, "on_completion": "keep"},
            {"assistant_id": "agent", "input": QUESTION, "on_completion": "keep"},
        ]
    )
    assert len(batch) == 2 and all(set(r) >= RUN_FIELDS for r in batch)
    assert len({r["thread_id"] for r in batch} | {tid, busy}) == 4
    for queued_run in batch:
        result = c.runs.join(queued_run["thread_id"], queued_run["run_id"])
        assert result["messages"][-1]["content"].startswith("It is ")

    # --- crons ---------------------------------------------------------------------------------
    stateless = c.crons.create(aid, schedule="0 3 1 1 *", input=QUESTION, metadata={"s": tag})
    assert set(stateless) >= CRON_FIELDS and stateless["thread_id"] is None
    on_thread = c.crons.create_for_thread(tid, aid, schedule="0 4 1 1 *", input=QUESTION)
    assert set(on_thread) >= CRON_FIELDS and on_thread["thread_id"] == tid
    moved = c.crons.update(stateless["cron_id"], schedule="30 3 1 1 *")
    assert (moved["cron_id"], moved["schedule"]) == (stateless["cron_id"], "30 3 1 1 *")
    crons = c.crons.search(assistant_id=aid)
    assert {x["cron_id"] for x in crons} == {stateless["cron_id"], on_thread["cron_id"]}
    assert all(set(x) >= CRON_FIELDS for x in crons)
    assert c.crons.count(assistant_id=aid) == 2
    c.crons.delete(stateless["cron_id"])
    c.crons.delete(on_thread["cron_id"])
    assert c.crons.count(assistant_id=aid) == 0

    # --- store ---------------------------------------------------------------------------------
    ns = ["sdk", tag]
    c.store.put_item(ns, "k1", {"topic": "cats"})
    c.store.put_item([*ns, "deeper"], "k2", {"topic": "dogs"})
    item = c.store.get_item(ns, "k1")
    assert set(item) >= ITEM_FIELDS
    assert (item["namespace"], item["key"], item["value"]) == (ns, "k1", {"topic": "cats"})
    searched = c.store.search_items(ns, filter={"topic": "dogs"})
    assert [i["key"] for i in searched["items"]] == ["k2"]
    assert all(set(i) >= ITEM_FIELDS for i in searched["items"])
    assert sorted(c.store.list_namespaces(prefix=ns)["namespaces"]) == [ns, [*ns, "deeper"]]
    c.store.delete_item(ns, "k1")
    assert c.store.get_item(ns, "k1") is None

    # --- deletions -----------------------------------------------------------------------------
    c.threads.delete(busy)
    with pytest.raises(NotFoundError):
        c.threads.get(busy)
    c.assistants.delete(aid, delete_threads=True)
    with pytest.raises(NotFoundError):
        c.assistants.get(aid)
    with pytest.raises(NotFoundError):
        c.threads.get(tid)
