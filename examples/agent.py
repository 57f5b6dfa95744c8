"""The example assistant: answers "What time is it?" with the current UTC time.

Deterministic and offline (no LLM): a StateGraph over a `messages` state.
"""

from datetime import UTC, datetime

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


def answer(state: MessagesState) -> dict:
    last = state["messages"][-1].content if state["messages"] else ""
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    reply = f"It is {now}." if "time" in str(last).lower() else f"You said: {last}"
    return {"messages": [AIMessage(content=reply)]}


builder = StateGraph(MessagesState)
builder.add_node("agent", answer)
builder.add_edge(START, "agent")
builder.add_edge("agent", END)
graph = builder.compile()
