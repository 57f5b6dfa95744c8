"""Execute a claimed run with the real `langgraph` library.

Write order: the graph's checkpoints are written by LangGraph's saver as it
runs; the run's status is written last (runs.lifecycle.run_finish), so a finished run always
has its state. A cancel request is checked between graph steps.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from typing import Any

import django.db
import psycopg
from django.conf import settings
from django.utils import timezone
from langchain_core.messages import BaseMessageChunk
from langchain_core.tracers.event_stream import _AstreamEventsCallbackHandler
from langgraph.types import Command

from cronsvc import checkpointer, graphs
from cronsvc.jsonable import to_jsonable
from runs import lifecycle
from runs.leases import LeaseKeeper
from runs.models import Run, RunEvent, ThreadStream
from store.backend import get_store

log = logging.getLogger(__name__)


class RunCancelled(Exception):
    def __init__(self, action: str = "interrupt"):
        super().__init__(action)
        self.action = action


class RunTimedOut(Exception):
    pass


class LeaseLost(Exception):
    """The run was reaped (this worker stopped renewing in time) and belongs to
    another attempt now: stop without recording anything."""


LOST = "lost"
ROLLED_BACK = "rolled back"

# Connection-level database errors (from Django or from the checkpointer's
# psycopg pool): the run is retried, not failed.
DATABASE_UNAVAILABLE = (
    django.db.OperationalError,
    django.db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _resume_input(graph, run: Run, graph_input: Any) -> tuple[bool, Any]:
    """On a retried attempt, continue from the previous attempt's checkpoint
    instead of feeding the input again. Returns (already_done, input)."""
    if run.attempts <= 1:
        return False, graph_input
    snapshot = graph.get_state({"configurable": {"thread_id": str(run.thread_id)}})
    if (snapshot.metadata or {}).get("run_id") != str(run.run_id):
        return False, graph_input  # the previous attempt wrote nothing
    before = run.kwargs.get("interrupt_before") or []
    paused = snapshot.interrupts or before == "*" or set(snapshot.next) & set(before)
    if snapshot.next and not paused:
        return False, None
    if not snapshot.next and snapshot.tasks:
        # Every task of the last step wrote its result, but the step's own
        # checkpoint was not saved (killed in between): `next` is empty only
        # because those tasks are done. Continuing applies their writes.
        return False, None
    return True, None  # it got to the end or its interrupt; only its finish was lost


def stream_modes(run: Run) -> list[str] | None:
    """The stream modes a streamed run was created with, as the API names them
    (None: not streamed). A run started while a thread stream is open on its
    thread (runs.models.ThreadStream) is streamed from then on, so that the
    thread stream sees its events; a run nobody watches records none (one
    indexed query to know it, read by the claim on PostgreSQL:
    `run.thread_watched`)."""
    if not run.streamed:
        watched = run.thread_watched
        if watched is None:
            watched = ThreadStream.objects.filter(
                thread_id=run.thread_id, expires_at__gt=timezone.now()
            ).exists()
        if not watched:
            return None
        Run.objects.filter(pk=run.pk).update(streamed=True)
        run.streamed = True
    requested = run.kwargs.get("stream_mode") or ["values"]
    return list(dict.fromkeys([requested] if isinstance(requested, str) else requested))


class _EventsHandler(_AstreamEventsCallbackHandler):
    """LangChain's own callback handler behind `astream_events(version="v2")`,
    attached to the sync `graph.stream` the worker runs (astream_events is
    async only, and the checkpointer is a sync saver): it builds each v2
    event dict (event, name, run_id, tags, metadata, data, parent_ids) as the
    LangGraph Server streams it. LangChain runs its (never suspending)
    callbacks from the graph's threads; the events are kept here, in order,
    instead of being sent to an event loop's queue, until the recorder takes
    them."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: deque[dict] = deque()

    def _send(self, event: Any, event_type: str) -> None:
        if self.root_event_filter.include_event(event, event_type):
            self.pending.append(event)


class EventRecorder:
    """Stores what a streamed run's graph streams as RunEvent rows, named as the
    LangGraph Server names its events:
    - LangGraph's own modes (values, updates, custom, debug, tasks,
      checkpoints) as they come, "mode|ns1|ns2" from a subgraph;
    - "messages-tuple": LangGraph's (message chunk, metadata) pairs as
      "messages" events;
    - "messages": per message id, "messages/metadata" once, then the message so
      far as "messages/partial" (a streamed chunk) or "messages/complete";
    - "events": LangChain's v2 callback events (on_chain_start, on_chat_model_stream,
      ...) as "events" events, from the graph run itself down (its own
      on_chain_stream chunks are the modes above, not events). They are
      recorded before each chunk the graph yields and once it ends: the graph
      is then also asked for "tasks" and "messages" (not recorded unless
      requested), so they leave at each task's start and end and with each
      LLM token."""

    def __init__(self, run: Run, modes: list[str], *, subgraphs: bool):
        self.run_id = run.run_id
        self.subgraphs = subgraphs
        self.tuples = "messages-tuple" in modes
        self.whole = "messages" in modes
        self.messages: dict[str, Any] = {}
        native = ["messages" if m == "messages-tuple" else m for m in modes if m != "events"]
        self.recorded = set(native)
        self.events = _EventsHandler() if "events" in modes else None
        extra = ["tasks", "messages"] if self.events else []
        self.graph_modes = list(dict.fromkeys(native + extra))  # what graph.stream is asked for
        self.root_id: str | None = None

    def config(self, config: dict, *, attempt: int) -> dict:
        """`config` with the events handler among its callbacks (when "events"
        is recorded); on a first attempt the graph run's id is the run's, as
        on the LangGraph Server (a retry gets a fresh one)."""
        if self.events is None:
            return config
        config = {**config, "callbacks": [*(config.get("callbacks") or []), self.events]}
        if attempt <= 1:
            config["run_id"] = self.run_id
        return config

    def record(self, chunk: Any) -> None:
        self.flush()
        if self.subgraphs:
            namespace, mode, data = chunk
        else:
            (mode, data), namespace = chunk, ()
        if mode != "messages":
            if mode in self.recorded:
                self._store("|".join((mode, *namespace)), data)
            return
        if self.tuples:
            self._store("|".join(("messages", *namespace)), data)
        if self.whole:
            self._message(*data)

    def flush(self) -> None:
        """Records the callback events produced since the last time, in order."""
        if self.events is None or not self.events.pending:
            return
        rows = []
        while self.events.pending:
            event = self.events.pending.popleft()
            if "langsmith:hidden" in (event.get("tags") or ()):
                continue
            if self.root_id is None and not event["parent_ids"]:
                self.root_id = event["run_id"]  # the graph run: its start comes first
            elif event["run_id"] == self.root_id and event["event"].endswith("_end"):
                # Its input is in its start event (as astream_events sends it).
                event = {**event, "data": {k: v for k, v in event["data"].items() if k != "input"}}
            rows.append(RunEvent(run_id=self.run_id, event="events", data=to_jsonable(event)))
        RunEvent.objects.bulk_create(rows)

    def _message(self, message: Any, metadata: dict) -> None:
        key = message.id
        if key not in self.messages:
            self._store("messages/metadata", {key: {"metadata": metadata}})
        previous = self.messages.get(key)
        if isinstance(message, BaseMessageChunk):
            so_far = previous + message if isinstance(previous, BaseMessageChunk) else message
            self.messages[key] = so_far
            self._store("messages/partial", [so_far])
        else:
            self.messages[key] = message
            self._store("messages/complete", [message])

    def _store(self, event: str, data: Any) -> None:
        RunEvent.objects.create(run_id=self.run_id, event=event, data=to_jsonable(data))


def _merge(base: dict | None, extra: dict | None) -> dict:
    out = dict(base or {})
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _final_values_known(graph: Any, kwargs: dict, recorder: Any, last: Any) -> bool:
    """Whether `last`, the last chunk of a `values` stream that ended without
    an exception, is the thread's final state with nothing next: a run that
    was not streamed to anyone (its chunks are the graph's values), that
    yielded a chunk (not a resumed attempt that was already done), whose
    values are the whole state (output channels = state channels), and that
    could not stop at an interrupt: no interrupt_before/after (the run's or
    the compiled graph's), no `__interrupt__` in the chunk (a node's
    `interrupt()`). Anything else reads the state back (get_state)."""
    if recorder is not None or not isinstance(last, dict) or "__interrupt__" in last:
        return False
    if kwargs.get("interrupt_before") or kwargs.get("interrupt_after"):
        return False
    if getattr(graph, "interrupt_before_nodes", None) or getattr(
        graph, "interrupt_after_nodes", None
    ):
        return False
    output = graph.output_channels
    state = graph.stream_channels_asis
    if isinstance(output, str) or isinstance(state, str):
        return False
    return list(output) == list(state)


def build_config(run: Run) -> dict:
    assistant = run.assistant
    config = _merge(assistant.config if assistant else {}, run.kwargs.get("config"))
    configurable = dict(config.get("configurable") or {})
    configurable.update(
        {
            "thread_id": str(run.thread_id),
            "run_id": str(run.run_id),
            "assistant_id": str(run.assistant_id),
            "graph_id": assistant.graph_id if assistant else None,
        }
    )
    configurable.pop("checkpoint_id", None)
    config["configurable"] = configurable
    config["metadata"] = _merge(
        config.get("metadata"),
        {
            **(run.metadata or {}),
            "run_id": str(run.run_id),
            "thread_id": str(run.thread_id),
            "assistant_id": str(run.assistant_id),
        },
    )
    config.setdefault("recursion_limit", 25)
    return config


def execute(run: Run) -> str:
    """Run the graph for a claimed (running) run; record its end. Returns the status.

    Holds the run's lease meanwhile: renewed between steps and by the
    process's LeaseRenewer thread during a step; when it is lost the run is
    left to the attempt that holds it now."""
    keeper = LeaseKeeper(run)
    keeper.start()
    try:
        return _execute(run, keeper)
    finally:
        keeper.stop()


def _execute(run: Run, keeper: LeaseKeeper) -> str:
    attempt = run.attempts
    assistant = run.assistant
    if assistant is None:
        lifecycle.run_finish(
            run_id=run.run_id,
            status=Run.Status.ERROR,
            error="Assistant was deleted",
            attempt=attempt,
        )
        return Run.Status.ERROR
    kwargs = run.kwargs or {}
    config = build_config(run)
    saver = checkpointer.get_saver()
    recorder: EventRecorder | None = None
    try:
        graph = graphs.get_graph(
            assistant.graph_id, checkpointer=saver, store=get_store(), config=config
        )
        command = kwargs.get("command")
        graph_input: Any = Command(**command) if command else kwargs.get("input")
        done, graph_input = _resume_input(graph, run, graph_input)
        context = _merge(assistant.context, kwargs.get("context")) or None
        durability = kwargs.get("durability")
        if durability is None and kwargs.get("checkpoint_during") is False:
            durability = "exit"
        modes = stream_modes(run)
        recorder = (
            EventRecorder(run, modes, subgraphs=bool(kwargs.get("stream_subgraphs")))
            if modes
            else None
        )
        stream = (
            iter(())
            if done
            else graph.stream(
                graph_input,
                recorder.config(config, attempt=attempt) if recorder else config,
                context=context,
                stream_mode=recorder.graph_modes if recorder else "values",
                subgraphs=bool(recorder and recorder.subgraphs),
                interrupt_before=kwargs.get("interrupt_before"),
                interrupt_after=kwargs.get("interrupt_after"),
                durability=durability,
            )
        )
        deadline = time.monotonic() + settings.CRONSVC_RUN_TIMEOUT
        last: Any = None
        for chunk in stream:
            if recorder:
                recorder.record(chunk)
            else:
                last = chunk
            if keeper.lost.is_set() or not keeper.renew_if_due():
                stream.close()
                raise LeaseLost()
            if action := lifecycle.run_cancel_requested(run.run_id):
                stream.close()
                raise RunCancelled(action)
            if time.monotonic() > deadline:
                stream.close()
                raise RunTimedOut()
        if keeper.lost.is_set():
            raise LeaseLost()
        if recorder:
            recorder.flush()  # the graph run's end
        if _final_values_known(graph, kwargs, recorder, last):
            # The last values chunk is the thread's state and the graph ran
            # to its end: what get_state would read back (one query and a
            # checkpoint's deserialisation less per run).
            values, status = to_jsonable(last), Run.Status.SUCCESS
        else:
            snapshot = graph.get_state({"configurable": {"thread_id": str(run.thread_id)}})
            values = to_jsonable(snapshot.values)
            status = Run.Status.INTERRUPTED if snapshot.next else Run.Status.SUCCESS
        if not lifecycle.run_finish(
            run_id=run.run_id, status=status, output=values, values=values, attempt=attempt
        ):
            return LOST
        return status
    except LeaseLost:
        log.warning(
            "run %s: lease lost on attempt %s; leaving it to the reaper", run.run_id, attempt
        )
        return LOST
    except DATABASE_UNAVAILABLE as exc:
        # The database went away under the run (restart, failover, network):
        # not the graph's failure. The run keeps its lease until it expires;
        # then the reaper hands it to a new attempt, which continues from the
        # last checkpoint (at most CRONSVC_RUN_MAX_ATTEMPTS attempts).
        log.warning(
            "run %s: database unavailable on attempt %s (%s); the reaper retries it",
            run.run_id,
            attempt,
            exc,
        )
        return LOST
    except RunCancelled as cancelled:
        if recorder:
            recorder.flush()
        if cancelled.action == Run.MultitaskStrategy.ROLLBACK:
            values = _roll_back(graph, run)
            lifecycle.run_rolled_back(run_id=run.run_id, values=values, attempt=attempt)
            return ROLLED_BACK
        values = _safe_values(assistant.graph_id, run)
        lifecycle.run_finish(
            run_id=run.run_id,
            status=Run.Status.INTERRUPTED,
            output=values,
            values=values,
            error="Cancelled",
            attempt=attempt,
        )
        return Run.Status.INTERRUPTED
    except RunTimedOut:
        if recorder:
            recorder.flush()
        values = _safe_values(assistant.graph_id, run)
        lifecycle.run_finish(
            run_id=run.run_id,
            status=Run.Status.TIMEOUT,
            output=values,
            values=values,
            error=f"Run exceeded CRONSVC_RUN_TIMEOUT ({settings.CRONSVC_RUN_TIMEOUT:g} s)",
            attempt=attempt,
        )
        return Run.Status.TIMEOUT
    except Exception as exc:  # noqa: BLE001 - a graph's failure is recorded on its run
        log.warning("run %s failed: %s", run.run_id, exc)
        if recorder:
            recorder.flush()  # what the graph did up to its failure, before its `error`
        error = f"{type(exc).__name__}: {exc}"
        lifecycle.run_finish(
            run_id=run.run_id,
            status=Run.Status.ERROR,
            error=error,
            output={
                "error": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(limit=5),
            },
            values=_safe_values(assistant.graph_id, run),
            attempt=attempt,
        )
        return Run.Status.ERROR


def _roll_back(graph, run: Run) -> Any:
    """Undo what `run` wrote to its thread's state; returns the values it had
    before the run (None: it had none).

    With LangGraph's own API: the newest checkpoint no step of this run wrote
    is copied to the head of the thread (`__copy__`, a fork), so the state,
    and the next run, start from before it; the rolled-back checkpoints stay
    in the history as a branch no one continues. When the run wrote the
    thread's first checkpoint, the thread's checkpoints are deleted."""
    config = {"configurable": {"thread_id": str(run.thread_id)}}
    before = next(
        (
            snapshot
            for snapshot in graph.get_state_history(config)
            if (snapshot.metadata or {}).get("run_id") != str(run.run_id)
        ),
        None,
    )
    if before is None:
        checkpointer.delete_thread(str(run.thread_id))
        return None  # as a thread no run has written to
    graph.update_state(before.config, None, as_node="__copy__")
    return to_jsonable(before.values)


def _safe_values(graph_id: str, run: Run) -> Any:
    try:
        graph = graphs.get_graph(graph_id, checkpointer=checkpointer.get_saver())
        return to_jsonable(
            graph.get_state({"configurable": {"thread_id": str(run.thread_id)}}).values
        )
    except Exception:  # noqa: BLE001
        return None
