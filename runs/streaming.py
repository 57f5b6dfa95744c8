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

import asyncio
import datetime as dt
import functools
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.http import StreamingHttpResponse
from django.utils import timezone

from cronsvc import offloop
from cronsvc.errors import Unavailable
from runs import lifecycle, services, waiters
from runs.models import Run, RunEvent, ThreadStream
from threads.models import Thread

BATCH = 500

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
    """One open stream of this process, under CRONSVC_MAX_OPEN_STREAMS, and
    what the stream holds. Taken by the view before the response starts
    (refused with a 503 when none is left), given back once: when the relay
    ends, or the response closes or is dropped, its body started or not.

    What the stream takes is registered on its slot as it is taken (the hold
    on a stateless run's thread, a thread stream's registration: `on_release`;
    the cancel of an on_disconnect="cancel" run: `on_disconnect`) and given
    back, off the loop, with the slot: a client that leaves before the first
    event, or while the run is being started, leaves nothing to expire. A
    registration made after the slot went back is given back at once."""

    open = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.held = True
        self._ended = False
        self._on_disconnect: list[tuple[Callable[..., object], tuple]] = []
        self._on_release: list[tuple[Callable[..., object], tuple]] = []

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

    def on_release(self, fn: Callable[..., object], *args: object) -> None:
        """`fn(*args)` off the loop when the slot is given back."""
        self._register(self._on_release, fn, args)

    def on_disconnect(self, fn: Callable[..., object], *args: object) -> None:
        """`fn(*args)` off the loop when the slot is given back before the
        stream reached its end (`ended`): the client left first."""
        self._register(self._on_disconnect, fn, args)

    def ended(self) -> None:
        """The stream reached its end: the run's ending, its deletion, or the
        wait's bound (the client resumes)."""
        self._ended = True

    def _register(self, calls: list, fn: Callable[..., object], args: tuple) -> None:
        with self._lock:
            if self.held:
                calls.append((fn, args))
                return
        if calls is self._on_release or not self._ended:
            offloop.submit(fn, *args)

    def release(self) -> None:
        with self._lock:
            if not self.held:
                return
            self.held = False
            StreamSlot.open -= 1
        # Not awaited: the request may be being cancelled, or the response
        # collected; the disconnect's calls (a run's cancel) before the rest.
        calls = ([] if self._ended else self._on_disconnect) + self._on_release
        for fn, args in calls:
            offloop.submit(fn, *args)


_TAKE: Any = object()  # relay's default: it takes its hold on the thread itself


class EventStreamResponse(StreamingHttpResponse):
    """A text/event-stream answer over an async iterator (events leave as they
    are produced), holding its stream slot until it is done."""

    def __init__(self, slot: StreamSlot, events: AsyncIterator[bytes]):
        super().__init__(events, content_type="text/event-stream")
        self.slot = slot
        # A response dropped before its body started (the client went away)
        # gives it back too (not at the interpreter's exit: nothing to run it then).
        weakref.finalize(self, slot.release).atexit = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Django's ASGI handler closes (aclosing) only the generator this
        # returns; its own __aiter__ would leave the events' generator to the
        # garbage collector, so a client that left while an event was being
        # sent had its run cancelled (on_disconnect="cancel") and its stream's
        # registrations released whenever a collection came, seconds or
        # minutes later. Closed here, at once.
        events = self._iterator
        try:
            async for part in events:
                yield part
        finally:
            await events.aclose()

    def close(self) -> None:
        self.slot.release()
        super().close()


def last_event_id(run: Run) -> int:
    return RunEvent.objects.filter(run_id=run.pk).aggregate(last=Max("id"))["last"] or 0


def relay(
    run: Run,
    *,
    after: int,
    slot: StreamSlot,
    modes: set[str] | None = None,
    cancel_on_disconnect: bool = False,
    registration: Any = _TAKE,
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
    the response, or drops it before its body started) cancels the run.
    `slot`, the stream's place under CRONSVC_MAX_OPEN_STREAMS, is given back
    when the relay ends, with what it holds. `registration`: the hold
    hold_stateless_thread took on the run's thread (on `slot`) when the run
    was started (by default the relay takes it as it begins)."""
    if cancel_on_disconnect:
        # On the slot now, not in the relay's body: a response dropped before
        # its body started never runs that.
        slot.on_disconnect(_cancel, run)
    return _relay(run, after, modes, slot, registration)


async def _relay(
    run: Run, after: int, modes: set[str] | None, slot: StreamSlot, registration: Any
) -> AsyncIterator[bytes]:
    # A stateless run's thread (and its events) goes CRONSVC_STATELESS_THREAD_GRACE
    # after the run ends; while this stream is open it stays, so a relay that
    # reads late still sends every event and the end.
    try:
        if registration is _TAKE:
            registration = await offloop.run(hold_stateless_thread, run, slot)
        yield sse("metadata", {"run_id": str(run.run_id), "attempt": max(run.attempts, 1)})
        sent = renewed = time.monotonic()
        deadline = sent + settings.CRONSVC_WAIT_TIMEOUT
        with waiters.poller().watch(run.pk) as watch:
            while time.monotonic() < deadline:
                if registration is not None and (
                    time.monotonic() - renewed >= settings.CRONSVC_STREAM_HEARTBEAT
                ):
                    await offloop.run(_renew_hold, registration)
                    renewed = time.monotonic()
                current, events = await offloop.run(_read, run.pk, after)
                for event_id, event, data in events:
                    after = event_id
                    if modes is None or event.split("|", 1)[0] in modes:
                        yield sse(event, data, event_id)
                if current is None:
                    slot.ended()  # deleted (with its thread)
                    return
                if current["status"] in Run.FINISHED and len(events) < BATCH:
                    slot.ended()
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
        slot.ended()  # the bound: the client reconnects and resumes
    finally:
        slot.release()


def run_start_streamed(
    run_input: dict, slot: StreamSlot, cancel_on_disconnect: bool
) -> tuple[Run, int | None]:
    """A stream endpoint's run (runs.services.run_start's arguments) started
    and, when stateless, its thread held for the stream in the same
    transaction: no worker can end it and delete its thread before the
    stream's relay begins (a loaded API's response may start seconds later).
    Both registered on the stream's `slot` once committed: a client that left
    meanwhile (its slot given back) has its hold given back and, with
    on_disconnect="cancel", its run cancelled at once."""
    registration = None
    with transaction.atomic():  # one commit: the run, its new thread and the hold
        run = services.run_start(**run_input)
        if run.on_completion == "delete":
            # The thread is new, seen by nobody else before this commits: one insert.
            registration = ThreadStream.objects.create(
                thread_id=run.thread_id, expires_at=_registration_expiry()
            ).pk
    if registration is not None:
        slot.on_release(_release_thread, registration, run.thread_id)
    if cancel_on_disconnect:
        slot.on_disconnect(_cancel, run)
    return run, registration


def hold_stateless_thread(run: Run, slot: StreamSlot) -> int | None:
    """The hold a stream of a stateless run (on_completion="delete") takes on
    its thread, given back with the stream's `slot`: the thread's deletion
    waits while the hold lives. None for a kept thread, or a thread gone
    already (a stream that starts the run takes it with the run:
    run_start_streamed)."""
    if run.on_completion != "delete":
        return None
    registration = _hold_thread(run.thread_id)
    if registration is not None:
        slot.on_release(_release_thread, registration, run.thread_id)
    return registration


def _hold_thread(thread_id) -> int | None:
    """Registers a run stream on a stateless run's thread (its deletion waits
    while the registration lives); None when the thread is gone already."""
    if not Thread.objects.filter(pk=thread_id).exists():
        return None
    try:
        with transaction.atomic():
            return ThreadStream.objects.create(
                thread_id=thread_id, expires_at=_registration_expiry()
            ).pk
    except IntegrityError:
        return (
            None  # deleted meanwhile (the key is checked at commit): the relay finds the run gone
        )


def _renew_hold(registration: int) -> None:
    ThreadStream.objects.filter(pk=registration).update(expires_at=_registration_expiry())


def _release_thread(registration: int, thread_id) -> None:
    _unregister(registration)
    # The deletion its stream held back (an idle thread, whose run ended).
    lifecycle.thread_delete_after_stream(thread_id)


def _read(run_pk, after: int) -> tuple[dict | None, list]:
    """The run's status and its next events after `after` (None: the run is
    gone), in one statement, so in one snapshot: a run finished by then has
    all its events committed. Its output, error and `streamed` only once it
    has finished (what `_ending` sends), by a second statement. Raw SQL
    compiled once: per wake of a stream the ORM's querysets cost more than the
    rows (1.2 ms a read on PostgreSQL, two round trips; the ending's values()
    query cost ten times a raw read)."""
    pk = _RUN_PK.get_db_prep_value(run_pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(_read_sql(), (after, pk, BATCH))
        rows = cursor.fetchall()
        if not rows:
            return None, []
        status = rows[0][0]
        data = _EVENT_DATA.from_db_value
        events = [
            (row[1], row[2], data(row[3], None, connection)) for row in rows if row[1] is not None
        ]
        if status not in Run.FINISHED or len(events) == BATCH:
            return {"status": status}, events
        cursor.execute(_ending_sql(), (pk,))
        ending = cursor.fetchone()
    if ending is None:
        return None, events  # deleted since
    status, output, error, streamed = ending
    output = _RUN_OUTPUT.from_db_value(output, None, connection)
    return {"status": status, "output": output, "error": error, "streamed": bool(streamed)}, events


_RUN_PK = Run._meta.pk
_RUN_OUTPUT = Run._meta.get_field("output")
_EVENT_DATA = RunEvent._meta.get_field("data")


@functools.cache
def _read_sql() -> str:
    run, event = Run._meta, RunEvent._meta
    field = event.get_field
    return (
        f"SELECT r.{run.get_field('status').column}, e.{field('id').column}, "  # noqa: S608 - model names
        f"e.{field('event').column}, e.{field('data').column} "
        f"FROM {run.db_table} r LEFT JOIN {event.db_table} e "
        f"ON e.{field('run').column} = r.{run.pk.column} AND e.{field('id').column} > %s "
        f"WHERE r.{run.pk.column} = %s ORDER BY e.{field('id').column} LIMIT %s"
    )


@functools.cache
def _ending_sql() -> str:
    """What `_ending` sends of a finished run, read by _read."""
    run = Run._meta
    columns = ", ".join(
        run.get_field(name).column for name in ("status", "output", "error", "streamed")
    )
    return f"SELECT {columns} FROM {run.db_table} WHERE {run.pk.column} = %s"  # noqa: S608 - model names


def _cancel(run: Run) -> None:
    """A stream's run cancelled as its client left (on_disconnect="cancel")."""
    lifecycle.run_cancel(run=run)


def _ending(run: dict, modes: set[str] | None) -> Iterator[bytes]:
    if run["status"] == Run.Status.ERROR:
        output = run["output"] or {}
        yield sse("error", {"error": output.get("error", "Error"), "message": run["error"] or ""})
    elif not run["streamed"] and (modes is None or "values" in modes):
        yield sse("values", run["output"] if run["output"] is not None else {})


# The stream modes of GET /threads/{id}/stream and the events each one sends:
# "lifecycle" a `metadata` event when a run starts ({"run_id", "attempt"}, as
# the run streams begin) and an `end` event when it ends ({"run_id",
# "status"}); "run_modes" those and every event the run records (its own
# stream modes; `error` before `end` when it failed); "state_update" its
# `values` events.
THREAD_STREAM_MODES = ("lifecycle", "run_modes", "state_update")
_THREAD_MODE_EVENTS: dict[str, set[str] | None] = {
    "lifecycle": {"metadata", "end"},
    "run_modes": None,  # everything
    "state_update": {"values"},
}


def thread_event_names(modes: Iterable[str]) -> set[str] | None:
    """The events the thread stream modes send (None: all)."""
    names: set[str] = set()
    for mode in modes:
        more = _THREAD_MODE_EVENTS[mode]
        if more is None:
            return None
        names |= more
    return names


def _registration_expiry() -> dt.datetime:
    # Renewed every heartbeat: a few missed renewals before workers stop recording.
    ttl = max(3 * settings.CRONSVC_STREAM_HEARTBEAT, 30)
    return timezone.now() + dt.timedelta(seconds=ttl)


def thread_stream_open(thread_id, after: int | None, slot: StreamSlot) -> tuple[int, int]:
    """Registers an open thread stream (runs.executor then records the events
    of the runs it starts on the thread), removed when the stream's `slot` is
    given back, and returns its registration's id and the event id to relay
    after: `after`, or the thread's last event id (from now on).
    Registrations their servers left behind are removed."""
    ThreadStream.objects.filter(expires_at__lte=timezone.now()).delete()
    registration = ThreadStream.objects.create(
        thread_id=thread_id, expires_at=_registration_expiry()
    )
    slot.on_release(_unregister, registration.pk)
    if after is None:
        last = RunEvent.objects.filter(run__thread_id=thread_id).aggregate(last=Max("id"))
        after = last["last"] or 0
    return registration.pk, after


def _renew(registration: int, thread_id) -> bool:
    """Extends the registration; False when the thread is gone."""
    expiry = _registration_expiry()
    if ThreadStream.objects.filter(pk=registration).update(expires_at=expiry):
        return True
    if not Thread.objects.filter(pk=thread_id).exists():
        return False
    ThreadStream.objects.create(pk=registration, thread_id=thread_id, expires_at=expiry)
    return True


def _unregister(registration: int) -> None:
    ThreadStream.objects.filter(pk=registration).delete()


async def thread_relay(
    thread_id,
    registration: int,
    *,
    after: int,
    names: set[str] | None,
    slot: StreamSlot,
) -> AsyncIterator[bytes]:
    """The events of the runs on a thread after event id `after` (the runs
    recorded them: streamed runs, and the runs started while this stream is
    registered), in id order, each with its id, as SSE: a run's events are
    preceded by `metadata` (when this stream sees its first event) and followed
    by `end` once it finished (`error` before it when it failed). Only `names`'
    events when given. Heartbeat comments renew the registration; the relay
    ends at CRONSVC_WAIT_TIMEOUT (the client reconnects with Last-Event-ID) or
    when the thread is deleted, and then gives back its `slot` (which removes
    the registration: thread_stream_open).

    It polls (every 20 ms while events come, backing off to 250 ms): two
    queries a round per open thread stream."""

    def wanted(event: str) -> bool:
        return names is None or event.split("|", 1)[0] in names

    active: dict[Any, None] = {}  # runs seen starting, not seen ending yet
    try:
        now = time.monotonic()
        sent = renewed = now
        deadline = now + settings.CRONSVC_WAIT_TIMEOUT
        delay = waiters.POLL_MIN
        while time.monotonic() < deadline:
            known = list(active)
            statuses, events = await offloop.run(_read_thread, thread_id, after, known)
            for event_id, run_id, attempts, event, data in events:
                after = event_id
                if run_id not in active:
                    if active:
                        # A run's first event: the runs before it that have
                        # finished end here, in order (all their events have
                        # lower ids), not after this run's events.
                        earlier = list(active)
                        current = await offloop.run(_statuses, earlier)
                        for earlier_id in earlier:
                            status = current.get(earlier_id)
                            if status is None or status["status"] in Run.FINISHED:
                                del active[earlier_id]
                                for part in _thread_run_ended(earlier_id, status, names, wanted):
                                    yield part
                    active[run_id] = None
                    if wanted("metadata"):
                        yield sse("metadata", {"run_id": str(run_id), "attempt": max(attempts, 1)})
                if wanted(event):
                    yield sse(event, data, event_id)
            ended = False
            if len(events) < BATCH:
                # Statuses were read before the events: a run finished then has
                # all its events among those sent.
                for run_id in known:
                    if run_id not in active:
                        continue  # ended already, when the next run began
                    current = statuses.get(run_id)
                    if current is not None and current["status"] not in Run.FINISHED:
                        continue
                    del active[run_id]
                    ended = True
                    for part in _thread_run_ended(run_id, current, names, wanted):
                        yield part
            now = time.monotonic()
            if events or ended:
                sent = now
                delay = waiters.POLL_MIN
                if len(events) == BATCH:
                    continue
            else:
                delay = min(delay * 1.5, waiters.POLL_MAX)
            if now - renewed >= settings.CRONSVC_STREAM_HEARTBEAT:
                if not await offloop.run(_renew, registration, thread_id):
                    return  # the thread was deleted
                renewed = time.monotonic()
            if now - sent >= settings.CRONSVC_STREAM_HEARTBEAT:
                yield b": heartbeat\n\n"
                sent = time.monotonic()
            await asyncio.sleep(max(min(delay, deadline - time.monotonic()), 0))
    finally:
        slot.release()


def _thread_run_ended(run_id, current: dict | None, names, wanted) -> list[bytes]:
    """What a thread stream sends when a run ends: `error` (when it failed)
    and `end`; nothing for a deleted run (`current` None)."""
    if current is None:
        return []
    parts = []
    if current["status"] == Run.Status.ERROR and names is None:
        output = current["output"] or {}
        parts.append(
            sse(
                "error",
                {"error": output.get("error", "Error"), "message": current["error"] or ""},
            )
        )
    if wanted("end"):
        parts.append(sse("end", {"run_id": str(run_id), "status": current["status"]}))
    return parts


def _statuses(run_ids: list) -> dict:
    if not run_ids:
        return {}
    return {
        row["run_id"]: row
        for row in Run.objects.filter(pk__in=run_ids).values("run_id", "status", "output", "error")
    }


def _read_thread(thread_id, after: int, known: list) -> tuple[dict, list]:
    # Statuses first (see thread_relay).
    statuses = _statuses(known)
    events = list(
        RunEvent.objects.filter(run__thread_id=thread_id, id__gt=after)
        .order_by("id")
        .values_list("id", "run_id", "run__attempts", "event", "data")[:BATCH]
    )
    return statuses, events
