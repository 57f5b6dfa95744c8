"""Thread state, read and written through LangGraph's checkpointer."""

from __future__ import annotations

import re
from typing import Any

from cronsvc import checkpointer, graphs
from cronsvc.errors import Invalid, NotFound
from cronsvc.jsonable import to_jsonable
from threads.models import Thread

# History metadata filter keys: the SQLite checkpointer writes them into a JSON
# path, so both databases accept the same safe set.
HISTORY_FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _config(thread: Thread, checkpoint: dict | None = None) -> dict:
    configurable: dict[str, Any] = {"thread_id": str(thread.thread_id), "checkpoint_ns": ""}
    for key, value in (checkpoint or {}).items():
        if value is not None and key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
            configurable[key] = value
    return {"configurable": configurable}


def _checkpoint_ref(config: dict | None) -> dict | None:
    if not config:
        return None
    c = config.get("configurable", {})
    return {
        "thread_id": c.get("thread_id"),
        "checkpoint_ns": c.get("checkpoint_ns", ""),
        "checkpoint_id": c.get("checkpoint_id"),
        "checkpoint_map": c.get("checkpoint_map"),
    }


def snapshot_to_dict(snapshot) -> dict:
    interrupts = []
    tasks = []
    for task in snapshot.tasks or ():
        task_interrupts = [to_jsonable(i) for i in getattr(task, "interrupts", ()) or ()]
        interrupts += task_interrupts
        tasks.append(
            {
                "id": task.id,
                "name": task.name,
                "path": to_jsonable(getattr(task, "path", None)),
                "error": str(task.error) if getattr(task, "error", None) else None,
                "interrupts": task_interrupts,
                "checkpoint": None,
                "state": None,
                "result": to_jsonable(getattr(task, "result", None)),
            }
        )
    checkpoint = _checkpoint_ref(snapshot.config)
    parent = _checkpoint_ref(snapshot.parent_config)
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next or ()),
        "tasks": tasks,
        "metadata": to_jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": interrupts,
        # Deprecated duplicates the server still sends.
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def empty_state(thread: Thread) -> dict:
    """The state of a thread without a graph or a checkpoint, as the server shows it."""
    return {
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


def graph_id_of(thread: Thread) -> str | None:
    """The graph a thread's state belongs to: that of its runs, else `metadata.graph_id`
    (what the SDK's `threads.create(graph_id=...)` sets)."""
    graph_id = thread.graph_id or (thread.metadata or {}).get("graph_id")
    return graph_id if graph_id in graphs.graph_specs() else None


def _graph(thread: Thread):
    graph_id = graph_id_of(thread)
    if graph_id is None:
        return None
    return graphs.get_graph(graph_id, checkpointer=checkpointer.get_saver())


def thread_get_state(
    *, thread: Thread, checkpoint: dict | None = None, subgraphs: bool = False
) -> dict:
    graph = _graph(thread)
    if graph is None:
        return empty_state(thread)
    snapshot = graph.get_state(_config(thread, checkpoint), subgraphs=subgraphs)
    if snapshot.config is None or not snapshot.created_at:
        return empty_state(thread)
    return snapshot_to_dict(snapshot)


def thread_history(
    *,
    thread: Thread,
    limit: int = 10,
    before: dict | None = None,
    metadata: dict | None = None,
    checkpoint: dict | None = None,
) -> list[dict]:
    graph = _graph(thread)
    if graph is None:
        return []
    kwargs: dict[str, Any] = {"limit": limit}
    if before:
        kwargs["before"] = _config(thread, before)
    if metadata:
        bad = [key for key in metadata if not HISTORY_FILTER_KEY.match(key)]
        if bad:
            raise Invalid(
                f"Invalid metadata filter keys {bad}: use letters, digits, '_' and '-' "
                "(at most 128)"
            )
        kwargs["filter"] = metadata
    return [
        snapshot_to_dict(s) for s in graph.get_state_history(_config(thread, checkpoint), **kwargs)
    ]


def thread_update_state(
    *, thread: Thread, values: Any, as_node: str | None = None, checkpoint: dict | None = None
) -> dict:
    """Write the update; the caller checks the thread has a graph (threads.services).

    An update at a checkpoint the thread does not have is a NotFound (it would
    otherwise start the thread over from nothing); values the graph's reducers
    cannot take are Invalid. Either way nothing is written."""
    graph = _graph(thread)
    config = _config(thread, checkpoint)
    if config["configurable"].get("checkpoint_id") and (
        checkpointer.get_saver().get_tuple(config) is None
    ):
        raise NotFound(
            f"Checkpoint {config['configurable']['checkpoint_id']} not found "
            f"for thread {thread.thread_id}"
        )
    try:
        config = graph.update_state(config, values, as_node=as_node)
    except (TypeError, NotImplementedError, AttributeError) as exc:
        raise Invalid(f"Invalid state update: {str(exc).splitlines()[0]}") from exc
    ref = _checkpoint_ref(config)
    # `configurable` and `checkpoint_id` are deprecated duplicates the server still sends.
    return {"checkpoint": ref, "configurable": ref, "checkpoint_id": ref["checkpoint_id"]}


def latest_values(thread: Thread) -> Any:
    graph = _graph(thread)
    if graph is None:
        return None
    return to_jsonable(graph.get_state(_config(thread)).values)


def latest_values_and_next(thread: Thread) -> tuple[Any, list[str]]:
    graph = _graph(thread)
    if graph is None:
        return None, []
    snapshot = graph.get_state(_config(thread))
    return to_jsonable(snapshot.values), list(snapshot.next or ())
