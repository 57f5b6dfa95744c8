"""Test data, built through the product's own services, and the small helpers
several test files share. One module instead of per-file copies."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from langchain_core.messages import AIMessage

from crons.models import Cron
from crons.services import cron_create
from cronsvc import checkpointer
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from runs.services import run_create
from threads.models import Thread
from threads.services import thread_create


def z(text: str) -> dt.datetime:
    """'2026-03-08T07:00:00Z' -> an aware UTC datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def agent() -> Assistant:
    """The default assistant of the example graph `agent`."""
    return assistant_get_or_404("agent")


def make_thread(**kwargs: Any) -> Thread:
    return thread_create(**kwargs)


def make_cron(
    schedule: str = "* * * * *",
    tz: str | None = None,
    *,
    start: dt.datetime | None = None,
    **kwargs: Any,
) -> Cron:
    """A cron of `agent` (created as of `start`, default now)."""
    return cron_create(assistant=agent(), schedule=schedule, timezone=tz, now=start, **kwargs)


def make_run(thread: Thread, **kwargs: Any) -> Run:
    """A pending run of `agent` on `thread`, with an empty input unless given."""
    kwargs.setdefault("kwargs", {"input": {}})
    return run_create(thread=thread, assistant=agent(), **kwargs)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ai_messages_in_checkpoint(thread_id: Any) -> int:
    """How many AI messages the thread's latest checkpoint holds."""
    saved = checkpointer.get_saver().get_tuple({"configurable": {"thread_id": str(thread_id)}})
    return sum(isinstance(m, AIMessage) for m in saved.checkpoint["channel_values"]["messages"])
