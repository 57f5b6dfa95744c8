"""An assistant with memory across runs, through LangGraph's store: each run
counts itself in the store under ("runs", <assistant id>) and says which run it
is. A stateless cron makes a new thread per fire, so the store is its only
memory. Deterministic and offline (no LLM).
"""

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.base import BaseStore


def remember(state: MessagesState, config: RunnableConfig, *, store: BaseStore) -> dict:
    namespace = ("runs", str(config["configurable"].get("assistant_id")))
    item = store.get(namespace, "count")
    count = (item.value["count"] if item else 0) + 1
    store.put(namespace, "count", {"count": count})
    return {"messages": [AIMessage(content=f"This is run {count}.")]}


builder = StateGraph(MessagesState)
builder.add_node("remember", remember)
builder.add_edge(START, "remember")
builder.add_edge("remember", END)
graph = builder.compile()
