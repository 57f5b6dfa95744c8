"""Server-sent events for runs: the stream endpoints and join_stream relay the
RunEvent rows a worker records while it executes a streamed run.

The worker and the API server share nothing but the database: the relay reads
the run's new events when the process's poller (runs.waiters) sees the run
change, and sends an SSE comment every CRONSVC_STREAM_HEARTBEAT seconds
without events. Every event
carries its row id as the SSE id, so a client that reconnects with
Last-Event-ID (the SDKs do, through the Location header) misses nothing.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.http import StreamingHttpResponse

from cronsvc import offloop
from cronsvc.errors import Unavailable
from runs import lifecycle, waiters
from runs.models import Run, RunEvent

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


class StreamSlot:
    """One open stream of this process, under CRONSVC_MAX_OPEN_STREAMS. Taken by
    the view before the response starts (refused with a 503 when none is left),
    given back once when the relay ends, the response closes or is dropped."""

    open = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.held = True

    @classmethod
    def take(cls) -> StreamSlot:
        with cls._lock:
            if cls.open >= settings.CRONSVC_MAX_OPEN_STREAMS:
                raise Unavailable(
                    f"This server has {cls.open} open streams, its limit "
                    "(CRONSVC_MAX_OPEN_STREAMS): try again later, or use another server."
                )
            cls.open += 1
        return cls()

    def release(self) -> None:
        with self._lock:
            if self.held:
                self.held = False
                StreamSlot.open -= 1


class EventStreamResponse(StreamingHttpResponse):
    """A text/event-stream answer over an async iterator (events leave as they
    are produced), holding its stream slot until it is done."""

    def __init__(self, slot: StreamSlot, events: AsyncIterator[bytes]):
        super().__init__(events, content_type="text/event-stream")
        self.slot = slot
        # A response dropped before its body started (the client went away) gives it back too.
        weakref.finalize(self, slot.release)

    def close(self) -> None:
        self.slot.release()
        super().close()


def last_event_id(run: Run) -> int:
    return RunEvent.objects.filter(run_id=run.pk).aggregate(last=Max("id"))["last"] or 0


async def relay(
    run: Run,
    *,
    after: int,
    modes: set[str] | None = None,
    cancel_on_disconnect: bool = False,
    slot: StreamSlot | None = None,
) -> AsyncIterator[bytes]:
    """A run's events after event id `after` until the run ends (or is deleted),
    as SSE: first `metadata`, then the recorded events (only `modes`' when
    given), then `error` when the run failed. A run that was not streamed has
    no events: its final values are sent as one `values` event instead.

    Async: each event leaves as soon as it is read; between reads the relay
    awaits the process's poller (runs.waiters), holding no thread, and reads
    through the bounded executor (cronsvc.offloop). Bounded by
    CRONSVC_WAIT_TIMEOUT; the client resumes from its last event id. With
    `cancel_on_disconnect`, a client that goes away first (the server cancels
    the response) cancels the run. `slot`, the stream's place under
    CRONSVC_MAX_OPEN_STREAMS, is given back when the relay ends."""
    over = False
    try:
        yield sse("metadata", {"run_id": str(run.run_id), "attempt": max(run.attempts, 1)})
        sent = time.monotonic()
        deadline = sent + settings.CRONSVC_WAIT_TIMEOUT
        with waiters.poller().watch(run.pk) as watch:
            while time.monotonic() < deadline:
                current, events = await offloop.run(_read, run.pk, after)
                for event_id, event, data in events:
                    after = event_id
                    if modes is None or event.split("|", 1)[0] in modes:
                        yield sse(event, data, event_id)
                if current is None:
                    over = True  # deleted (with its thread)
                    return
                if current["status"] in Run.FINISHED and len(events) < BATCH:
                    over = True
                    for chunk in _ending(current, modes):
                        yield chunk
                    return
                if events:
                    sent = time.monotonic()
                    if len(events) == BATCH:
                        continue
                heartbeat_at = sent + settings.CRONSVC_STREAM_HEARTBEAT
                wait = min(heartbeat_at, deadline) - time.monotonic()
                if not await watch.wait(wait) and time.monotonic() >= heartbeat_at:
                    # An SSE comment: keeps proxies from timing the stream out.
                    yield b": heartbeat\n\n"
                    sent = time.monotonic()
        over = True  # the bound: the client reconnects and resumes
    finally:
        if not over and cancel_on_disconnect:
            # Not awaited: the request is being cancelled, the cancel must happen anyway.
            offloop.submit(_cancel, run)
        if slot is not None:
            slot.release()


def _read(run_pk, after: int) -> tuple[dict | None, list]:
    # Status first: a run finished by then has all its events committed.
    current = Run.objects.filter(pk=run_pk).values("status", "output", "error", "streamed").first()
    events = list(
        RunEvent.objects.filter(run_id=run_pk, id__gt=after)
        .order_by("id")
        .values_list("id", "event", "data")[:BATCH]
    )
    return current, events


def _cancel(run: Run) -> None:
    lifecycle.run_cancel(run=run)


def _ending(run: dict, modes: set[str] | None) -> Iterator[bytes]:
    if run["status"] == Run.Status.ERROR:
        output = run["output"] or {}
        yield sse("error", {"error": output.get("error", "Error"), "message": run["error"] or ""})
    elif not run["streamed"] and (modes is None or "values" in modes):
        yield sse("values", run["output"] if run["output"] is not None else {})
