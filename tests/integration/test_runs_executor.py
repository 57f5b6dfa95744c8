"""Executor edges: time limits between graph steps, and cascades that keep
django-celery-beat mirrors in step."""

import pytest
from django_celery_beat.models import PeriodicTask

from crons.services import cron_create
from cronsvc.selectors import assistant_get_or_404
from cronsvc.services import assistant_create, assistant_delete
from runs import tasks
from runs.models import Run
from runs.services import run_create
from threads.services import thread_create, thread_delete

# Runs here are drained by the test itself (runs.tasks.drain), never by the
# session's worker.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("parked_runs")]


def test_a_run_over_its_time_limit_ends_as_timeout(settings, monkeypatch):
    monkeypatch.setenv("SLOW_GRAPH_SECONDS", "0.3")
    settings.CRONSVC_RUN_TIMEOUT = 0.1
    thread = thread_create()
    run = run_create(
        thread=thread, assistant=assistant_get_or_404("slow"), kwargs={"input": {"messages": []}}
    )
    assert tasks.drain(str(thread.thread_id)) == 1
    run.refresh_from_db()
    assert run.status == "timeout"
    assert run.error == "Run exceeded CRONSVC_RUN_TIMEOUT (0.1 s)"
    thread.refresh_from_db()
    assert thread.status == "idle"


def test_deleting_a_thread_or_assistant_removes_its_crons_mirrors():
    thread = thread_create()
    agent = assistant_get_or_404("agent")
    cron_create(assistant=agent, thread=thread, schedule="0 * * * *")
    other = assistant_create(graph_id="agent", name="other")
    cron_create(assistant=other, schedule="0 * * * *")
    kept = cron_create(assistant=agent, schedule="5 * * * *")
    assert PeriodicTask.objects.count() == 3
    thread_delete(thread=thread)
    assistant_delete(assistant=other)
    assert list(PeriodicTask.objects.values_list("pk", flat=True)) == [kept.periodic_task_id]
    assert Run.objects.count() == 0


class Killed(BaseException):
    """Stands in for kill -9: nothing in the worker catches it."""


def _expire_and_reap(run):
    from datetime import timedelta

    from django.utils import timezone

    from runs.leases import runs_reap

    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert runs_reap()["requeued"] == 1


def test_a_retry_after_a_kill_between_a_steps_writes_and_its_checkpoint_finishes_the_graph(
    monkeypatch,
):
    # Attempt 1 dies after the first step's task wrote its result but before
    # that step's checkpoint was saved. Its state then shows no next node, which
    # is not the end of the graph: attempt 2 must go on and run `agent`.
    from cronsvc import checkpointer
    from runs import executor, lifecycle, wakeups

    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    saver_type = type(checkpointer.get_saver())
    original_put = saver_type.put
    killed = []

    def put(self, config, checkpoint, metadata, new_versions):
        if metadata.get("step") == 0 and not killed:
            killed.append(True)
            raise Killed()
        return original_put(self, config, checkpoint, metadata, new_versions)

    monkeypatch.setattr(saver_type, "put", put)
    thread = thread_create()
    question = {"messages": [{"role": "user", "content": "What time is it?"}]}
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": question, "durability": "sync"},
    )
    first = lifecycle.run_claim_next(thread_id=thread.thread_id)
    with pytest.raises(Killed):
        executor.execute(first)
    _expire_and_reap(first)

    second = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert executor.execute(second) == "success"

    second.refresh_from_db()
    assert second.attempts == 2
    assert [m["type"] for m in second.output["messages"]] == ["human", "ai"]


def test_a_database_outage_during_a_run_retries_it_instead_of_failing_it(monkeypatch):
    import psycopg

    from runs import executor, lifecycle, wakeups

    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    thread = thread_create()
    run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs={"input": {}})
    first = lifecycle.run_claim_next(thread_id=thread.thread_id)

    def outage(*args, **kwargs):
        raise psycopg.OperationalError("consuming input failed: server closed the connection")

    with monkeypatch.context() as patch:
        patch.setattr(lifecycle, "run_cancel_requested", outage)
        assert executor.execute(first) == executor.LOST

    first.refresh_from_db()
    assert (first.status, first.error) == ("running", None)
    _expire_and_reap(first)
    second = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert executor.execute(second) == "success"


def _run_rolled_back_mid_run(thread, monkeypatch, content):
    """Execute a run on `thread` that is cancelled with rollback after its step."""
    from runs import executor, lifecycle, wakeups

    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": {"messages": [{"role": "user", "content": content}]}},
    )
    run = lifecycle.run_claim_next(thread_id=thread.thread_id)
    with monkeypatch.context() as patch:
        # Checked between steps: the rollback arrives once the graph has written.
        patch.setattr(lifecycle, "run_cancel_requested", lambda run_id: "rollback")
        assert executor.execute(run) == executor.ROLLED_BACK
    return run


def test_rollback_of_a_running_run_undoes_its_state_and_deletes_it(monkeypatch):
    from cronsvc import checkpointer, graphs
    from runs import wakeups
    from threads.models import Thread

    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    thread = thread_create()
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": {"messages": [{"role": "user", "content": "first"}]}},
    )
    assert tasks.drain(str(thread.thread_id)) == 1
    kept = Thread.objects.get(pk=thread.pk).values
    assert [m["content"] for m in kept["messages"]] == ["first", "You said: first"]

    rolled = _run_rolled_back_mid_run(thread, monkeypatch, "second")

    assert not Run.objects.filter(pk=rolled.pk).exists()
    thread.refresh_from_db()
    assert (thread.status, thread.values) == ("idle", kept)
    graph = graphs.get_graph("agent", checkpointer=checkpointer.get_saver())
    state = graph.get_state({"configurable": {"thread_id": str(thread.thread_id)}})
    assert [m.content for m in state.values["messages"]] == ["first", "You said: first"]
    # The next run continues from before the rolled-back one.
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": {"messages": [{"role": "user", "content": "third"}]}},
    )
    assert tasks.drain(str(thread.thread_id)) == 1
    thread.refresh_from_db()
    assert [m["content"] for m in thread.values["messages"]] == [
        "first",
        "You said: first",
        "third",
        "You said: third",
    ]


def test_rollback_of_a_threads_first_run_leaves_it_empty(monkeypatch):
    from cronsvc import checkpointer, graphs

    thread = thread_create()
    _run_rolled_back_mid_run(thread, monkeypatch, "only")

    thread.refresh_from_db()
    assert (thread.status, thread.values) == ("idle", thread_create().values)  # as new
    assert Run.objects.filter(thread=thread).count() == 0
    graph = graphs.get_graph("agent", checkpointer=checkpointer.get_saver())
    assert graph.get_state({"configurable": {"thread_id": str(thread.thread_id)}}).values == {}


def test_messages_mode_records_a_message_as_it_grows_and_tuple_mode_each_chunk(monkeypatch):
    # A chat model streaming tokens (LangChain's fake one: no network, no key).
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from runs import executor, lifecycle, wakeups
    from runs.models import RunEvent

    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there")]))
    builder = StateGraph(MessagesState)
    builder.add_node("chat", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "chat")
    monkeypatch.setattr(
        "cronsvc.graphs.get_graph",
        lambda graph_id, checkpointer=None, store=None, config=None: builder.compile(
            checkpointer=checkpointer, store=store
        ),
    )
    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    thread = thread_create()
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "stream_mode": ["messages", "messages-tuple"],
        },
        streamed=True,
    )
    run = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert executor.execute(run) == "success"

    events = list(RunEvent.objects.filter(run=run).order_by("id").values_list("event", "data"))
    partials = [data[0]["content"] for event, data in events if event == "messages/partial"]
    assert partials == ["hello", "hello ", "hello there"]
    tuples = [data[0]["content"] for event, data in events if event == "messages"]
    assert tuples == ["hello", " ", "there"]
    metadata = [data for event, data in events if event == "messages/metadata"]
    assert len(metadata) == 1
    ((message_id, meta),) = metadata[0].items()
    assert meta["metadata"]["langgraph_node"] == "chat"
    assert all(data[0]["id"] == message_id for event, data in events if event == "messages/partial")
    assert not [e for e, _ in events if e == "messages/complete"]  # streamed, not repeated


def test_events_mode_records_langchains_v2_events_beside_the_other_modes(monkeypatch):
    # As the LangGraph Server sends stream_mode="events": astream_events(version="v2")
    # dicts, the graph run's own on_chain_stream chunks left to the other modes.
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from runs import executor, lifecycle, wakeups
    from runs.models import RunEvent

    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there")]))
    builder = StateGraph(MessagesState)
    builder.add_node("chat", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "chat")
    monkeypatch.setattr(
        "cronsvc.graphs.get_graph",
        lambda graph_id, checkpointer=None, store=None, config=None: builder.compile(
            checkpointer=checkpointer, store=store
        ),
    )
    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    thread = thread_create()
    question = {"messages": [{"role": "user", "content": "hi"}]}
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": question, "stream_mode": ["values", "events"]},
        streamed=True,
    )
    run = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert executor.execute(run) == "success"

    rows = list(RunEvent.objects.filter(run=run).order_by("id").values_list("event", "data"))
    assert {event for event, _ in rows} == {"values", "events"}  # no tasks or messages
    events = [data for event, data in rows if event == "events"]
    assert [e["event"] for e in events] == [
        "on_chain_start",
        "on_chain_start",
        "on_chat_model_start",
        "on_chat_model_stream",
        "on_chat_model_stream",
        "on_chat_model_stream",
        "on_chat_model_end",
        "on_chain_end",
        "on_chain_end",
    ]
    for event in events:
        assert set(event) == {"event", "name", "run_id", "tags", "metadata", "data", "parent_ids"}
    graph_start, node_start, model_start = events[:3]
    assert graph_start["run_id"] == str(run.run_id)  # the graph run is the run, as there
    assert graph_start["parent_ids"] == [] and graph_start["data"] == {"input": question}
    assert node_start["name"] == "chat" and node_start["parent_ids"] == [str(run.run_id)]
    assert node_start["metadata"]["langgraph_node"] == "chat"
    assert node_start["metadata"]["thread_id"] == str(thread.thread_id)
    assert model_start["parent_ids"] == [str(run.run_id), node_start["run_id"]]
    tokens = [e["data"]["chunk"]["content"] for e in events if e["event"] == "on_chat_model_stream"]
    assert tokens == ["hello", " ", "there"]
    graph_end = events[-1]
    assert graph_end["run_id"] == str(run.run_id) and "input" not in graph_end["data"]
    final = [data for event, data in rows if event == "values"][-1]
    assert [m["content"] for m in final["messages"]] == ["hi", "hello there"]
    # In order: the graph's start before its first state, its end after its last.
    assert rows[0][0] == "events" and rows[-1] == ("events", graph_end)


def test_a_failing_runs_events_are_recorded_up_to_its_failure(monkeypatch):
    from langgraph.graph import START, MessagesState, StateGraph

    from runs import executor, lifecycle, wakeups
    from runs.models import RunEvent

    def broken(state):
        raise ValueError("no")

    builder = StateGraph(MessagesState)
    builder.add_node("broken", broken)
    builder.add_edge(START, "broken")
    monkeypatch.setattr(
        "cronsvc.graphs.get_graph",
        lambda graph_id, checkpointer=None, store=None, config=None: builder.compile(
            checkpointer=checkpointer, store=store
        ),
    )
    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    thread = thread_create()
    run_create(
        thread=thread,
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": {"messages": []}, "stream_mode": "events"},
        streamed=True,
    )
    run = lifecycle.run_claim_next(thread_id=thread.thread_id)
    assert executor.execute(run) == "error"

    events = list(RunEvent.objects.filter(run=run).order_by("id").values_list("event", "data"))
    assert [(event, data["event"], data["name"]) for event, data in events] == [
        ("events", "on_chain_start", "LangGraph"),
        ("events", "on_chain_start", "broken"),
    ]
