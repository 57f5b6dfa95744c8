"""Server-sent events for runs: the stream endpoints and join_stream relay the
RunEvent rows a worker records while it executes a streamed run.

The worker and the API server share nothing but the database, so the relay
polls it (every 20 ms while events flow, backing off to 250 ms), and sends an
SSE comment every CRONSVC_STREAM_HEARTBEAT seconds without events. Every event
carries its row id as the SSE id, so a client that reconnects with
Last-Event-ID (the SDKs do, through the Location header) misses nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Max

from runs import lifecycle
from runs.models import Run, RunEvent

POLL_MIN = 0.02
POLL_MAX = 0.25
BATCH = 500

# Stream modes the stream endpoints relay (runs.executor.EventRecorder records
# them); "events" (LangChain callback events) is not one of them.
SUPPORTED_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "debug",
    "tasks",
    "checkpoints",
)
MESSAGE_EVENTS = {"messages/metadata", "messages/partial", "messages/complete"}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event; `data` as compact JSON on one line."""
    text = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n"
    if event_id is not None:
        text += f"id: {event_id}\n"
    return (text + "\n").encode()


def event_names(modes: Iterable[str]) -> set[str]:
    """The event names the requested stream modes produce."""
    names: set[str] = set()
    for mode in modes:
        if mode == "messages":
            names |= MESSAGE_EVENTS
        else:
            names.add("messages" if mode == "messages-tuple" else mode)
    return names


def last_event_id(run: Run) -> int:
    return RunEvent.objects.filter(run_id=run.pk).aggregate(last=Max("id"))["last"] or 0


def relay(
    run: Run,
    *,
    after: int,
    modes: set[str] | None = None,
    cancel_on_disconnect: bool = False,
) -> Iterator[bytes]:
    """A run's events after event id `after` until the run ends (or is deleted),
    as SSE: first `metadata`, then the recorded events (only `modes`' when
    given), then `error` when the run failed. A run that was not streamed has
    no events: its final values are sent as one `values` event instead.

    Bounded by CRONSVC_WAIT_TIMEOUT; the client resumes from its last event id.
    With `cancel_on_disconnect`, a client that goes away first cancels the run."""
    yield sse("metadata", {"run_id": str(run.run_id), "attempt": max(run.attempts, 1)})
    over = False
    delay = POLL_MIN
    sent = time.monotonic()
    deadline = sent + settings.CRONSVC_WAIT_TIMEOUT
    try:
        while time.monotonic() < deadline:
            # Status first: a run finished by then has all its events committed.
            current = (
                Run.objects.filter(pk=run.pk)
                .values("status", "output", "error", "streamed")
                .first()
            )
            events = list(
                RunEvent.objects.filter(run_id=run.pk, id__gt=after)
                .order_by("id")
                .values_list("id", "event", "data")[:BATCH]
            )
            for event_id, event, data in events:
                after = event_id
                if modes is None or event.split("|", 1)[0] in modes:
                    yield sse(event, data, event_id)
            if current is None:
                over = True  # deleted (with its thread)
                return
            if current["status"] in Run.FINISHED and len(events) < BATCH:
                over = True
                yield from _ending(current, modes)
                return
            if events:
                delay, sent = POLL_MIN, time.monotonic()
                continue
            if time.monotonic() - sent >= settings.CRONSVC_STREAM_HEARTBEAT:
                # An SSE comment: keeps proxies from timing the stream out, and
                # lets the server notice a client that went away.
                yield b": heartbeat\n\n"
                sent = time.monotonic()
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)
        over = True  # the bound: the client reconnects and resumes
    finally:
        if not over and cancel_on_disconnect:
            lifecycle.run_cancel(run=run)


def _ending(run: dict, modes: set[str] | None) -> Iterator[bytes]:
    if run["status"] == Run.Status.ERROR:
        output = run["output"] or {}
        yield sse("error", {"error": output.get("error", "Error"), "message": run["error"] or ""})
    elif not run["streamed"] and (modes is None or "values" in modes):
        yield sse("values", run["output"] if run["output"] is not None else {})
