"""Streaming runs (runs.stream, runs.join_stream) through the official SDK,
executed by the session's real worker."""

import httpx
import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from cronsvc.services import assistants_ensure_defaults
from runs.models import Run, RunEvent
from tests.conftest import wait_until
from threads.models import Thread

pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


@pytest.fixture(autouse=True)
def system_assistant():
    assistants_ensure_defaults()


def parts(stream) -> list[tuple[str, object]]:
    return [(part.event, part.data) for part in stream]


def test_stream_on_a_thread_sends_metadata_then_each_state(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    created = []

    events = parts(
        sdk.runs.stream(thread_id, "agent", input=QUESTION, on_run_created=created.append)
    )

    assert [e for e, _ in events] == ["metadata", "values", "values"]
    run_id = events[0][1]["run_id"]
    assert events[0][1] == {"run_id": run_id, "attempt": 1}
    assert created[0]["run_id"] == run_id and created[0]["thread_id"] == thread_id
    assert [m["type"] for m in events[1][1]["messages"]] == ["human"]
    final = events[2][1]
    assert [m["type"] for m in final["messages"]] == ["human", "ai"]
    assert final["messages"][1]["content"].startswith("It is ")
    assert sdk.runs.get(thread_id, run_id)["status"] == "success"
    assert sdk.threads.get(thread_id)["values"] == final


def test_several_modes_and_stateless_stream(sdk, worker):
    events = parts(
        sdk.runs.stream(
            None,
            "agent",
            input={"messages": [{"role": "user", "content": "hi"}]},
            stream_mode=["updates", "messages-tuple", "values", "messages"],
        )
    )

    names = [e for e, _ in events]
    assert names[0] == "metadata"
    assert set(names[1:]) == {
        "values",
        "updates",
        "messages",
        "messages/metadata",
        "messages/complete",
    }
    complete = next(d for e, d in events if e == "messages/complete")
    assert [m["content"] for m in complete] == ["You said: hi"]
    updates = [d for e, d in events if e == "updates"]
    assert [m["content"] for m in updates[0]["agent"]["messages"]] == ["You said: hi"]
    message, meta = next(d for e, d in events if e == "messages")
    assert message["content"] == "You said: hi" and meta["langgraph_node"] == "agent"


def test_join_stream_replays_a_streamed_run_and_gives_a_background_run_its_values(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    streamed = parts(sdk.runs.stream(thread_id, "agent", input=QUESTION))
    run_id = streamed[0][1]["run_id"]

    replay = parts(sdk.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    only_values = parts(
        sdk.runs.join_stream(thread_id, run_id, last_event_id="-1", stream_mode="updates")
    )

    assert replay == streamed
    assert only_values == streamed[:1]
    ids = list(RunEvent.objects.filter(run_id=run_id).order_by("id").values_list("id", flat=True))
    resumed = parts(sdk.runs.join_stream(thread_id, run_id, last_event_id=str(ids[0])))
    assert resumed == [streamed[0], streamed[2]]

    background = sdk.runs.create(thread_id, "agent", input={"messages": []})
    joined = parts(sdk.runs.join_stream(thread_id, background["run_id"]))
    assert [e for e, _ in joined] == ["metadata", "values"]
    assert joined[1][1] == sdk.threads.get(thread_id)["values"]
    assert not RunEvent.objects.filter(run_id=background["run_id"]).exists()


EVENT_FIELDS = {"event", "name", "run_id", "tags", "metadata", "data", "parent_ids"}


def test_events_mode_streams_langchains_v2_events_as_the_langgraph_server(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]

    streamed = parts(sdk.runs.stream(thread_id, "agent", input=QUESTION, stream_mode="events"))

    assert [e for e, _ in streamed] == ["metadata", "events", "events", "events", "events"]
    run_id = streamed[0][1]["run_id"]
    events = [d for _, d in streamed[1:]]
    assert all(set(e) == EVENT_FIELDS for e in events)
    assert [(e["event"], e["name"]) for e in events] == [
        ("on_chain_start", "LangGraph"),
        ("on_chain_start", "agent"),
        ("on_chain_end", "agent"),
        ("on_chain_end", "LangGraph"),
    ]
    graph_start, node_start, node_end, graph_end = events
    assert graph_start["run_id"] == graph_end["run_id"] == run_id
    assert graph_start["parent_ids"] == [] and graph_start["data"] == {"input": QUESTION}
    assert graph_start["metadata"]["thread_id"] == thread_id
    assert node_start["parent_ids"] == [run_id] and node_start["tags"] == ["graph:step:1"]
    assert node_start["metadata"]["langgraph_node"] == "agent"
    assert node_end["run_id"] == node_start["run_id"]
    answer = node_end["data"]["output"]["messages"][0]
    assert answer["type"] == "ai" and answer["content"].startswith("It is ")
    assert "input" not in graph_end["data"]  # in its start, as astream_events sends it
    assert sdk.runs.get(thread_id, run_id)["status"] == "success"


def test_events_with_other_modes_and_joining_them_later(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]

    streamed = parts(
        sdk.runs.stream(thread_id, "agent", input=QUESTION, stream_mode=["values", "events"])
    )
    run_id = streamed[0][1]["run_id"]
    replay = parts(sdk.runs.join_stream(thread_id, run_id, last_event_id="-1"))
    only_events = parts(
        sdk.runs.join_stream(thread_id, run_id, last_event_id="-1", stream_mode="events")
    )
    resumable = sdk.runs.create(
        thread_id, "agent", input=QUESTION, stream_mode=["events"], stream_resumable=True
    )
    joined = parts(sdk.runs.join_stream(thread_id, resumable["run_id"], last_event_id="-1"))
    unwatched = sdk.runs.create(thread_id, "agent", input=QUESTION, stream_mode="events")
    sdk.runs.join(thread_id, unwatched["run_id"])

    names = [(e, d.get("event")) for e, d in streamed]
    assert names == [
        ("metadata", None),
        ("events", "on_chain_start"),
        ("values", None),
        ("events", "on_chain_start"),
        ("events", "on_chain_end"),
        ("values", None),
        ("events", "on_chain_end"),
    ]
    assert [m["type"] for m in streamed[-2][1]["messages"]] == ["human", "ai"]
    assert replay == streamed
    assert only_events == [streamed[0]] + [p for p in streamed if p[0] == "events"]
    assert [e for e, _ in joined] == ["metadata", "events", "events", "events", "events"]
    assert joined[1][1]["run_id"] == resumable["run_id"]
    assert all(set(d) == EVENT_FIELDS for _, d in joined[1:])
    # Nobody asked to watch it: no events were produced.
    assert not RunEvent.objects.filter(run_id=unwatched["run_id"]).exists()


def test_a_failing_run_ends_its_stream_with_an_error_event(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]

    events = parts(
        sdk.runs.stream(thread_id, "agent", input={"messages": [{"role": "nobody", "content": 1}]})
    )

    assert events[0][0] == "metadata"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] and events[-1][1]["message"]
    assert sdk.runs.get(thread_id, events[0][1]["run_id"])["status"] == "error"


def test_stream_errors_are_json_and_write_nothing(sdk, live_server):
    thread_id = sdk.threads.create()["thread_id"]
    before = Run.objects.count(), Thread.objects.count()

    with pytest.raises(NotFoundError):
        parts(sdk.runs.stream("00000000-0000-0000-0000-000000000000", "agent", input=QUESTION))
    with pytest.raises(UnprocessableEntityError) as unknown:
        parts(sdk.runs.stream(thread_id, "agent", input=QUESTION, stream_mode="everything"))
    response = httpx.post(
        f"{live_server.url}/runs/stream",
        json={"assistant_id": "nope", "input": QUESTION},
        headers={"Accept": "text/event-stream"},
    )
    with pytest.raises(NotFoundError):
        parts(sdk.runs.join_stream(thread_id, "00000000-0000-0000-0000-000000000000"))

    assert "stream_mode" in unknown.value.response.json()["detail"]
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert "Invalid assistant" in response.json()["detail"]
    assert (Run.objects.count(), Thread.objects.count()) == before


def test_a_client_that_disconnects_cancels_its_run_with_on_disconnect_cancel(
    sdk, live_server, settings, monkeypatch
):
    # The run stays pending (no wake-up is published), so only the disconnect
    # can end it; the keep-alive comment is how the server notices it. Should
    # the session's worker claim it anyway (its drain takes any ready run after
    # another test's), the slow graph's 2 s step keeps it running until the
    # cancel is seen between steps: interrupted either way, never a success.
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    settings.CRONSVC_STREAM_HEARTBEAT = 0.1
    thread_id = sdk.threads.create()["thread_id"]

    with httpx.stream(
        "POST",
        f"{live_server.url}/threads/{thread_id}/runs/stream",
        json={
            "assistant_id": "slow",
            "input": QUESTION,
            "config": {"configurable": {"seconds": 2}},
            "on_disconnect": "cancel",
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        run_id = response.headers["Content-Location"].rsplit("/", 1)[1]
        assert response.headers["Location"] == f"/threads/{thread_id}/runs/{run_id}/stream"
        first = next(response.iter_lines())
        assert first == "event: metadata"

    def cancelled():
        return Run.objects.filter(pk=run_id, status="interrupted").exists()

    # Generous under a loaded CI machine: the worker may be mid-step when the cancel lands.
    try:
        wait_until(cancelled, timeout=30)
    except AssertionError:
        row = Run.objects.values("status", "cancel_action", "attempts", "started_at").get(pk=run_id)
        raise AssertionError(f"the run was not interrupted: {row}") from None
    assert Run.objects.get(pk=run_id).cancel_action == "interrupt"
