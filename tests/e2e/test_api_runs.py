"""The runs endpoints, through the official SDK.

Tests that need a run to stay pending publish to a queue no worker consumes
(`parked`), so they hold whether or not the session's worker is up; the tests
that execute runs use the `worker` fixture."""

import uuid

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from cronsvc.celery import app
from cronsvc.models import Assistant
from cronsvc.services import assistants_ensure_defaults
from runs.models import Run
from tests.conftest import QUEUE
from threads.models import Thread

# available_apps: flush only these apps' tables between tests, which keeps the suite fast.
pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

AGENT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))
QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
RUN_FIELDS = {
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "langsmith_session_name",
}


@pytest.fixture(autouse=True)
def system_assistant():
    assistants_ensure_defaults()


@pytest.fixture
def parked(monkeypatch):
    """Runs created in this test are never executed: their wake-up goes to a queue
    that no worker reads (purged afterwards)."""
    parked_queue = f"{QUEUE}-parked"
    monkeypatch.setattr(app.conf, "task_default_queue", parked_queue)
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(parked_queue)


def rows():
    return Assistant.objects.count(), Thread.objects.count(), Run.objects.count()


# --- runs that stay pending ---------------------------------------------------------------------


def test_create_returns_a_pending_run_and_get_returns_the_same(sdk, parked, live_server):
    thread = sdk.threads.create(metadata={"owner": "ann"})
    thread_id = thread["thread_id"]

    run = sdk.runs.create(
        thread_id,
        "agent",
        input=QUESTION,
        metadata={"source": "test"},
        config={"tags": ["t"]},
        interrupt_before=["agent"],
    )

    assert set(run) == RUN_FIELDS
    assert run["thread_id"] == thread_id
    assert run["assistant_id"] == AGENT_ID
    assert run["status"] == "pending"
    assert run["multitask_strategy"] == "enqueue"
    assert run["langsmith_session_name"] is None
    assert run["metadata"] == {
        "created_by": "system",
        "owner": "ann",
        "source": "test",
        "assistant_id": AGENT_ID,
    }
    assert run["kwargs"]["input"] == QUESTION
    assert run["kwargs"]["config"] == {"tags": ["t"]}
    assert run["kwargs"]["interrupt_before"] == ["agent"]
    assert sdk.runs.get(thread_id, run["run_id"]) == run
    assert sdk.runs.list(thread_id) == [run]
    assert sdk.threads.get(thread_id)["status"] == "busy"
    assert sdk.threads.get(thread_id)["metadata"] == {
        "owner": "ann",
        "graph_id": "agent",
        "assistant_id": AGENT_ID,
    }


def test_create_with_an_assistant_uuid(sdk, parked):
    assistant = sdk.assistants.create("agent", metadata={"kind": "custom"})
    thread = sdk.threads.create()

    run = sdk.runs.create(thread["thread_id"], assistant["assistant_id"])

    assert run["assistant_id"] == assistant["assistant_id"]
    assert run["metadata"] == {"kind": "custom", "assistant_id": assistant["assistant_id"]}


def test_create_sets_content_location(sdk, parked, live_server):
    thread_id = sdk.threads.create()["thread_id"]

    on_thread = httpx.post(
        f"{live_server.url}/threads/{thread_id}/runs", json={"assistant_id": "agent"}
    )
    stateless = httpx.post(f"{live_server.url}/runs", json={"assistant_id": "agent"})

    assert on_thread.status_code == 200
    assert on_thread.headers["Content-Location"] == (
        f"/threads/{thread_id}/runs/{on_thread.json()['run_id']}"
    )
    assert stateless.status_code == 200
    assert stateless.headers["Content-Location"] == f"/runs/{stateless.json()['run_id']}"


def test_on_run_created_callback_gets_the_ids(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    seen = []

    run = sdk.runs.create(thread_id, "agent", on_run_created=seen.append)

    assert [(m["run_id"], m["thread_id"]) for m in seen] == [(run["run_id"], thread_id)]


def test_reject_while_a_run_is_active_is_409_and_writes_nothing(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    active = sdk.runs.create(thread_id, "agent")
    before = rows()

    with pytest.raises(ConflictError) as exc:
        sdk.runs.create(thread_id, "agent", multitask_strategy="reject")

    assert exc.value.message == (
        f"Thread {thread_id} is busy with another run (multitask_strategy=reject)"
    )
    assert rows() == before
    assert [r["run_id"] for r in sdk.runs.list(thread_id)] == [active["run_id"]]


def test_enqueue_while_a_run_is_active_queues_the_run(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    first = sdk.runs.create(thread_id, "agent")

    second = sdk.runs.create(thread_id, "agent", multitask_strategy="enqueue")

    assert [r["run_id"] for r in sdk.runs.list(thread_id)] == [second["run_id"], first["run_id"]]
    assert [r["status"] for r in sdk.runs.list(thread_id)] == ["pending", "pending"]


def test_interrupt_strategy_interrupts_the_pending_run(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    first = sdk.runs.create(thread_id, "agent")

    sdk.runs.create(thread_id, "agent", multitask_strategy="interrupt")

    assert sdk.runs.get(thread_id, first["run_id"])["status"] == "interrupted"


def test_update_state_while_a_run_is_active_is_409(sdk, parked):
    thread_id = sdk.threads.create(graph_id="agent")["thread_id"]
    sdk.runs.create(thread_id, "agent")

    with pytest.raises(ConflictError):
        sdk.threads.update_state(thread_id, QUESTION, as_node="agent")

    assert sdk.threads.get_state(thread_id)["checkpoint"] is None


def test_if_not_exists_create_makes_the_thread(sdk, parked):
    thread_id = str(uuid.uuid4())

    run = sdk.runs.create(thread_id, "agent", if_not_exists="create")

    assert run["thread_id"] == thread_id
    thread = sdk.threads.get(thread_id)
    assert thread["status"] == "busy"
    assert thread["metadata"] == {"graph_id": "agent", "assistant_id": AGENT_ID}


def test_run_on_a_missing_thread_is_404_and_writes_nothing(sdk, parked):
    before = rows()

    with pytest.raises(NotFoundError) as exc:
        sdk.runs.create(str(uuid.uuid4()), "agent", input=QUESTION)

    assert exc.value.message == "Thread or assistant not found."
    assert rows() == before


def test_run_with_an_unknown_assistant(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    before = rows()

    with pytest.raises(NotFoundError) as missing:
        sdk.runs.create(thread_id, str(uuid.uuid4()))
    with pytest.raises(UnprocessableEntityError) as invalid:
        sdk.runs.create(thread_id, "nope")
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.create(None, "nope")

    assert missing.value.message == "Thread or assistant not found."
    assert invalid.value.message == (
        "Invalid assistant: 'nope'. Must be either:\n- A valid assistant UUID, or\n"
        "- One of the registered graphs: agent, slow, memory, flaky"
    )
    assert rows() == before


def test_cancel_a_pending_run_interrupts_it(sdk, parked, live_server):
    thread_id = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(thread_id, "agent")

    response = httpx.post(f"{live_server.url}/threads/{thread_id}/runs/{run['run_id']}/cancel")

    assert response.status_code == 202
    assert response.content == b""
    assert sdk.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
    assert sdk.threads.get(thread_id)["status"] == "idle"
    with pytest.raises(NotFoundError) as again:
        sdk.runs.cancel(thread_id, run["run_id"])
    assert again.value.message.startswith("No matching runs to cancel.")


def test_cancel_with_wait_returns_the_final_values(sdk, parked, live_server):
    thread_id = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(thread_id, "agent")
    url = f"{live_server.url}/threads/{thread_id}/runs"
    other = httpx.post(url, json={"assistant_id": "agent"}).json()

    values = sdk.runs.cancel(thread_id, run["run_id"], wait=True)
    response = httpx.post(f"{url}/{other['run_id']}/cancel", params={"wait": "true"})

    assert values == {}
    assert sdk.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["Location"] == f"/threads/{thread_id}/runs/{other['run_id']}/join"
    assert response.headers["Content-Location"] == f"/threads/{thread_id}/runs/{other['run_id']}"


def test_cancel_with_rollback_deletes_a_pending_run(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(thread_id, "agent")

    sdk.runs.cancel(thread_id, run["run_id"], action="rollback")

    with pytest.raises(NotFoundError):
        sdk.runs.get(thread_id, run["run_id"])
    assert Run.objects.count() == 0
    assert sdk.threads.get(thread_id)["status"] == "idle"


def test_delete_is_204_then_404(sdk, parked, live_server):
    thread_id = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(thread_id, "agent")

    response = httpx.delete(f"{live_server.url}/threads/{thread_id}/runs/{run['run_id']}")

    assert response.status_code == 204
    assert response.content == b""
    with pytest.raises(NotFoundError):
        sdk.runs.get(thread_id, run["run_id"])
    with pytest.raises(NotFoundError):
        sdk.runs.delete(thread_id, run["run_id"])
    assert Run.objects.count() == 0


def test_list_filters_by_status_paginates_and_selects(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]
    runs = [sdk.runs.create(thread_id, "agent") for _ in range(3)]
    sdk.runs.cancel(thread_id, runs[0]["run_id"])
    newest_first = [r["run_id"] for r in reversed(runs)]

    assert [r["run_id"] for r in sdk.runs.list(thread_id)] == newest_first
    assert [r["run_id"] for r in sdk.runs.list(thread_id, limit=2)] == newest_first[:2]
    assert [r["run_id"] for r in sdk.runs.list(thread_id, limit=2, offset=2)] == newest_first[2:]
    assert [r["run_id"] for r in sdk.runs.list(thread_id, status="interrupted")] == [
        runs[0]["run_id"]
    ]
    assert [r["run_id"] for r in sdk.runs.list(thread_id, status="pending")] == newest_first[:2]
    assert sdk.runs.list(thread_id, status="success") == []
    assert sdk.runs.list(thread_id, limit=1, select=["run_id", "status"]) == [
        {"run_id": newest_first[0], "status": "pending"}
    ]


def test_list_with_an_invalid_select_or_status_is_422(sdk, parked):
    thread_id = sdk.threads.create()["thread_id"]

    with pytest.raises(UnprocessableEntityError):
        sdk.runs.list(thread_id, select=["cancel_reason"])
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.list(thread_id, status="done")


def test_stateless_create_makes_a_thread(sdk, parked):
    run = sdk.runs.create(None, "agent", input=QUESTION, metadata={"m": 1})

    thread = sdk.threads.get(run["thread_id"])
    assert run["status"] == "pending"
    assert run["assistant_id"] == AGENT_ID
    assert thread["status"] == "busy"
    assert thread["metadata"] == {"m": 1, "graph_id": "agent", "assistant_id": AGENT_ID}
    assert run["metadata"] == {"created_by": "system", "m": 1, "assistant_id": AGENT_ID}
    assert sdk.runs.get(run["thread_id"], run["run_id"]) == run


# --- runs that execute (worker) -------------------------------------------------------------------


def test_create_then_join_returns_the_final_values(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(thread_id, "agent", input=QUESTION)

    values = sdk.runs.join(thread_id, run["run_id"])

    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    assert values["messages"][1]["content"].startswith("It is ")
    assert sdk.runs.get(thread_id, run["run_id"])["status"] == "success"
    assert sdk.threads.get(thread_id)["status"] == "idle"
    assert sdk.threads.get(thread_id)["values"] == values
    assert sdk.runs.list(thread_id, status="success") == [sdk.runs.get(thread_id, run["run_id"])]
    assert sdk.runs.join(thread_id, run["run_id"]) == values


def test_wait_on_a_thread_with_an_assistant_uuid(sdk, worker, live_server):
    assistant = sdk.assistants.create("agent")
    thread_id = sdk.threads.create()["thread_id"]

    values = sdk.runs.wait(thread_id, assistant["assistant_id"], input=QUESTION)
    response = httpx.post(
        f"{live_server.url}/threads/{thread_id}/runs/wait",
        json={"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "x"}]}},
    )

    assert values["messages"][1]["content"].startswith("It is ")
    assert response.status_code == 200
    run_id = response.headers["Content-Location"].rsplit("/", 1)[1]
    assert response.headers["Content-Location"] == f"/threads/{thread_id}/runs/{run_id}"
    assert response.headers["Location"] == f"/threads/{thread_id}/runs/{run_id}/join"
    assert [m["content"] for m in response.json()["messages"]][2:] == ["x", "You said: x"]
    assert [r["assistant_id"] for r in sdk.runs.list(thread_id)] == [
        AGENT_ID,
        assistant["assistant_id"],
    ]


def test_stateless_wait_keeps_the_thread_with_on_completion_keep(sdk, worker, live_server):
    response = httpx.post(
        f"{live_server.url}/runs/wait",
        json={"assistant_id": "agent", "input": QUESTION, "on_completion": "keep"},
    )

    assert response.status_code == 200
    thread_id, run_id = response.headers["Content-Location"].split("/")[2::2]
    assert response.headers["Location"] == f"/threads/{thread_id}/runs/{run_id}/join"
    assert response.json()["messages"][1]["content"].startswith("It is ")
    assert sdk.threads.get(thread_id)["values"] == response.json()
    assert sdk.runs.get(thread_id, run_id)["status"] == "success"
