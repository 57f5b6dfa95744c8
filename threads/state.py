"""Thread state, read and written through LangGraph's checkpointer."""

from __future__ import annotations

from typing import Any

from cronsvc import checkpointer, graphs
from cronsvc.jsonable import to_jsonable
from threads.models import Thread


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
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next or ()),
        "tasks": tasks,
        "metadata": to_jsonable(snapshot.metadata) or {},
        "created_at": snapshot.created_at,
        "checkpoint": _checkpoint_ref(snapshot.config),
        "parent_checkpoint": _checkpoint_ref(snapshot.parent_config),
        "interrupts": interrupts,
    }


def empty_state(thread: Thread) -> dict:
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": {
            "thread_id": str(thread.thread_id),
            "checkpoint_ns": "",
            "checkpoint_id": None,
            "checkpoint_map": None,
        },
        "parent_checkpoint": None,
        "interrupts": [],
    }


def _graph(thread: Thread):
    if not thread.graph_id or thread.graph_id not in graphs.graph_specs():
        return None
    return graphs.get_graph(thread.graph_id, checkpointer=checkpointer.get_saver())


def thread_get_state(*, thread: Thread, checkpoint: dict | None = None, subgraphs: bool = False) -> dict:
    graph = _graph(thread)
    if graph is None:
        return empty_state(thread)
    snapshot = graph.get_state(_config(thread, checkpoint), subgraphs=subgraphs)
    if snapshot.config is None or not snapshot.created_at:
        return empty_state(thread)
    return snapshot_to_dict(snapshot)


def thread_history(
    *, thread: Thread, limit: int = 10, before: dict | None = None, metadata: dict | None = None,
    checkpoint: dict | None = None,
) -> list[dict]:
    graph = _graph(thread)
    if graph is None:
        return []
    kwargs: dict[str, Any] = {"limit": limit}
    if before:
        kwargs["before"] = _config(thread, before)
    if metadata:
        kwargs["filter"] = metadata
    return [snapshot_to_dict(s) for s in graph.get_state_history(_config(thread, checkpoint), **kwargs)]


def thread_update_state(
    *, thread: Thread, values: Any, as_node: str | None = None, checkpoint: dict | None = None
) -> dict:
    graph = _graph(thread)
    if graph is None:
        from cronsvc.errors import Conflict

        raise Conflict(
            f"Thread {thread.thread_id} has no graph yet: run an assistant on it before updating its state"
        )
    config = graph.update_state(_config(thread, checkpoint), values, as_node=as_node)
    return {"checkpoint": _checkpoint_ref(config)}


def latest_values(thread: Thread) -> Any:
    graph = _graph(thread)
    if graph is None:
        return None
    return to_jsonable(graph.get_state(_config(thread)).values)
