"""Waiting for runs without holding a thread: the async views (wait, join,
stream, join_stream) register a `Watch` on a run and await it.

One poller per process (per event loop) watches every run someone waits on,
with one query per round for all of them (each run's status and last event id),
every 20 ms while something changes, backing off to 250 ms; it wakes the
watches of the runs that changed. On PostgreSQL one listener thread per process
(one connection, `LISTEN cronsvc_runs`, fed by the triggers of migrations
runs/0005 and runs/0010) wakes them as soon as a run changes or is deleted;
while it is connected the poll is only a safety net, every 2 s whatever
changes (polling 500 watched runs every 20 ms under load cost the API and
PostgreSQL a quarter of the machine). A waiter holds no thread and no
connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator

import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import Max

from cronsvc import offloop, statements
from runs.models import Run, RunEvent

POLL_MIN = 0.02
POLL_MAX = 0.25
# The poll's longest pause while the listener is connected (a missed NOTIFY
# costs at most this).
POLL_MAX_LISTENING = 2.0
CHANNEL = "cronsvc_runs"

log = logging.getLogger(__name__)

State = tuple[str | None, int]  # (status, or None when gone; last event id)


class Watch:
    """Set when the watched run changed since the watch was last awaited."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when the run changed within `timeout` seconds."""
        try:
            await asyncio.wait_for(self.changed.wait(), max(timeout, 0))
            return True
        except TimeoutError:
            return False
        finally:
            self.changed.clear()


class Poller:
    """The runs this event loop's waiters watch, polled together."""

    def __init__(self) -> None:
        self.watches: dict[object, set[Watch]] = {}
        self.by_text: dict[str, object] = {}  # str(run id), as NOTIFY sends it -> run id
        self.seen: dict[object, State] = {}
        self.task: asyncio.Task | None = None
        self.loop = asyncio.get_running_loop()

    @contextlib.contextmanager
    def watch(self, run_id) -> Iterator[Watch]:
        watch = Watch()
        self.watches.setdefault(run_id, set()).add(watch)
        self.by_text[str(run_id)] = run_id
        if self.task is None or self.task.done():
            listener_start()
            self.task = self.loop.create_task(self._poll())
        try:
            yield watch
        finally:
            watchers = self.watches.get(run_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self.watches[run_id]
                    self.by_text.pop(str(run_id), None)
                    self.seen.pop(run_id, None)

    async def _poll(self) -> None:
        delay = POLL_MIN
        while self.watches:
            ids = list(self.watches)
            try:
                states = await offloop.run(_states, ids)
            except Exception:  # noqa: BLE001 - a failed round wakes everyone to look for themselves
                states = {}
                for run_id in ids:
                    self._wake(run_id)
            changed = False
            for run_id in ids:
                state = states.get(run_id, (None, 0))
                if self.seen.get(run_id) != state:
                    # A run seen for the first time wakes its waiters too: they
                    # may have looked before the change the poller sees now.
                    self.seen[run_id] = state
                    self._wake(run_id)
                    changed = True
            if listener.connected.is_set():
                # The listener wakes the watches; this only covers a lost NOTIFY.
                delay = POLL_MAX_LISTENING
            else:
                delay = POLL_MIN if changed else min(delay * 1.5, POLL_MAX)
            await asyncio.sleep(delay)

    def _wake(self, run_id) -> None:
        for watch in self.watches.get(run_id, ()):
            watch.changed.set()

    def notified(self, run_ids: set[str]) -> None:
        """On the loop: the listener heard these runs change."""
        for text in run_ids:
            run_id = self.by_text.get(text)
            if run_id is not None:
                self._wake(run_id)


class Listener:
    """One thread and one connection per process: LISTEN on CHANNEL, and hand
    the run ids it hears to every event loop's poller. Reconnects after a
    failure (the poll covers the gap)."""

    RETRY = 5.0

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.thread is None and connection.vendor == "postgresql":
                params = connection.get_connection_params()
                self.thread = threading.Thread(
                    target=self._run, args=(params,), name="cronsvc-listener", daemon=True
                )
                self.thread.start()

    def _run(self, params: dict) -> None:
        while True:
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    while True:
                        # What one packet brought, handed over at once (without
                        # stop_after, notifies() gathers until the timeout).
                        heard = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
                        if heard:
                            _notify_pollers(heard)
            except Exception as exc:  # noqa: BLE001 - any failure: poll meanwhile, then reconnect
                log.debug("run listener: %s; reconnecting in %s s", exc, self.RETRY)
            self.connected.clear()
            time.sleep(self.RETRY)


def _notify_pollers(run_ids: set[str]) -> None:
    for found in list(_pollers.values()):
        with contextlib.suppress(RuntimeError):  # its loop is closed
            found.loop.call_soon_threadsafe(found.notified, run_ids)


listener = Listener()


def listener_start() -> None:
    """The process's listener, on PostgreSQL when CRONSVC_RUN_LISTENER is on."""
    if settings.CRONSVC_RUN_LISTENER:
        listener.start()


def _states(run_ids: list) -> dict[object, State]:
    statuses = dict(Run.objects.filter(pk__in=run_ids).values_list("pk", "status"))
    last = dict(
        RunEvent.objects.filter(run_id__in=run_ids)
        .values("run_id")
        .annotate(last=Max("id"))
        .values_list("run_id", "last")
    )
    return {run_id: (status, last.get(run_id) or 0) for run_id, status in statuses.items()}


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = weakref.WeakKeyDictionary()


def poller() -> Poller:
    """This event loop's poller."""
    loop = asyncio.get_running_loop()
    found = _pollers.get(loop)
    if found is None:
        found = _pollers[loop] = Poller()
    return found


def _current(run_id) -> Run | None:
    return statements.first("run-by-pk", lambda pk: Run.objects.filter(pk=pk), run_id)


async def run_wait(run: Run, timeout: float | None = None) -> Run:
    """`run` once it is finished (or as last seen when deleted with its thread),
    waiting at most `timeout` (CRONSVC_WAIT_TIMEOUT) seconds; then as it is."""
    deadline = time.monotonic() + (timeout or settings.CRONSVC_WAIT_TIMEOUT)
    with poller().watch(run.pk) as watch:
        while True:
            current = await offloop.run(_current, run.pk)
            if current is None:
                return run
            if current.status in Run.FINISHED:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                return current
            await watch.wait(left)
