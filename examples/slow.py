"""A graph whose node waits, standing in for an LLM call: it sleeps
SLOW_GRAPH_SECONDS (default 0.2, read at each call), or the run's
`configurable.seconds` when given, and then answers.

Used by the worker shutdown test, the scaling benchmark and the SDK test that
cancels a running run. Offline and deterministic, like `agent`.
"""

import os
import time

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState, config: RunnableConfig) -> dict:
    asked = (config.get("configurable") or {}).get("seconds")
    seconds = float(asked if asked is not None else os.environ.get("SLOW_GRAPH_SECONDS", "0.2"))
    time.sleep(seconds)
    return {"messages": [AIMessage(content=f"Answered after {seconds:g} s.")]}


builder = StateGraph(MessagesState)
builder.add_node("agent", answer)
builder.add_edge(START, "agent")
builder.add_edge("agent", END)
graph = builder.compile()
