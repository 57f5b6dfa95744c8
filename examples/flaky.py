"""A graph that fails on its first attempts, for retry policies: `prepare`
then `act`. `act` raises while it has been attempted no more than the
input's `fail_times` (default 1) on this thread; each node counts its calls
in the store under ("flaky", <thread id>), so a retry that continues from the
checkpoint after `prepare` is seen to run `prepare` once. Deterministic and
offline (no LLM).
"""

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.base import BaseStore


class State(MessagesState, total=False):
    fail_times: int


def _count(store: BaseStore, config: RunnableConfig, node: str) -> int:
    namespace = ("flaky", str(config["configurable"].get("thread_id")))
    item = store.get(namespace, node)
    calls = (item.value["calls"] if item else 0) + 1
    store.put(namespace, node, {"calls": calls})
    return calls


def prepare(state: State, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    calls = _count(store, config, "prepare")
    return {"messages": [AIMessage(content=f"Prepared (call {calls}).")]}


def act(state: State, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    calls = _count(store, config, "act")
    if calls <= state.get("fail_times", 1):
        raise RuntimeError(f"flaky: attempt {calls} of act fails")
    return {"messages": [AIMessage(content=f"Done on attempt {calls} of act.")]}


builder = StateGraph(State)
builder.add_node("prepare", prepare)
builder.add_node("act", act)
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "act")
builder.add_edge("act", END)
graph = builder.compile()
