"""The graph registry: graphs declared in langgraph.json, as LangGraph users do.

`{"graphs": {"agent": "./examples/agent.py:graph"}}` — a path relative to the
config file (or a dotted module) and the attribute holding a StateGraph, a
compiled graph, or a function returning either.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from cronsvc.errors import GraphNotFound
from cronsvc.pyfiles import import_file

# The LangGraph Server's namespace for default assistant ids, so an assistant
# created for graph "agent" has the same id here as there.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")

_lock = threading.Lock()


def default_assistant_id(graph_id: str) -> uuid.UUID:
    return uuid.uuid5(ASSISTANT_NAMESPACE, graph_id)


@cache
def graph_specs() -> dict[str, str]:
    config_path = Path(settings.LANGGRAPH_CONFIG)
    with config_path.open() as fh:
        config = json.load(fh)
    return dict(config.get("graphs", {}))


def graph_ids() -> list[str]:
    return list(graph_specs())


def _load_object(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if not target:
        raise ValueError(f"Graph spec {spec!r} must look like './path.py:attr' or 'module:attr'")
    base = Path(settings.LANGGRAPH_CONFIG).resolve().parent
    if target.endswith(".py"):
        path = (base / target).resolve()
        module = import_file(path, "cronsvc_graph")
    else:
        module = importlib.import_module(target)
    return getattr(module, attr)


@cache
def _raw_graph(graph_id: str) -> Any:
    specs = graph_specs()
    if graph_id not in specs:
        raise GraphNotFound(
            f"Graph '{graph_id}' not found in {Path(settings.LANGGRAPH_CONFIG).name}. "
            f"Expected one of: {graph_ids()}"
        )
    with _lock:
        return _load_object(specs[graph_id])


# Static graphs compiled once per process, checkpointer and store:
# (graph_id, id(checkpointer), id(store)) -> (checkpointer, store, graph). A
# compiled graph holds no run's state, so runs share it (as LangGraph's own
# server does); a factory's graph depends on the run's config and is built per run.
_compiled: dict[tuple[str, int, int], tuple[Any, Any, Pregel]] = {}


def get_graph(
    graph_id: str, *, checkpointer: Any = None, store: Any = None, config: dict | None = None
) -> Pregel:
    """The graph for `graph_id`, compiled with `checkpointer` and `store` (None: without)."""
    obj = _raw_graph(graph_id)
    if callable(obj) and not isinstance(obj, (Pregel, StateGraph)):
        return _compile(graph_id, obj(config or {}), checkpointer, store)
    key = (graph_id, id(checkpointer), id(store))
    cached = _compiled.get(key)
    if cached is not None and cached[0] is checkpointer and cached[1] is store:
        return cached[2]
    graph = _compile(graph_id, obj, checkpointer, store)
    _compiled[key] = (checkpointer, store, graph)
    return graph


def _compile(graph_id: str, obj: Any, checkpointer: Any, store: Any) -> Pregel:
    if isinstance(obj, StateGraph):
        return obj.compile(checkpointer=checkpointer, store=store)
    if isinstance(obj, Pregel):
        return obj.copy(update={"checkpointer": checkpointer, "store": store})
    raise TypeError(f"Graph {graph_id!r} is neither a StateGraph nor a compiled graph")
