"""A graph whose node waits, standing in for an LLM call: it sleeps
SLOW_GRAPH_SECONDS (default 0.2, read at each call) and then answers.

Used by the worker shutdown test and the scaling benchmark. Offline and
deterministic, like `agent`.
"""

import os
import time

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState) -> dict:
    seconds = float(os.environ.get("SLOW_GRAPH_SECONDS", "0.2"))
    time.sleep(seconds)
    return {"messages": [AIMessage(content=f"Answered after {seconds:g} s.")]}


builder = StateGraph(MessagesState)
builder.add_node("agent", answer)
builder.add_edge(START, "agent")
builder.add_edge("agent", END)
graph = builder.compile()
