"""Waiting for runs without holding a thread: the async views (wait, join,
stream, join_stream) register a `Watch` on a run and await it.

One poller per process (per event loop) watches every run someone waits on,
with one query per round for all of them (each run's status and last event id),
every 20 ms while something changes, backing off to 250 ms; it wakes the
watches of the runs that changed. The worker and the API share nothing but the
database, so this poll is the notification on every backend; a waiter holds no
thread and no connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Max

from cronsvc import offloop
from runs.models import Run, RunEvent

POLL_MIN = 0.02
POLL_MAX = 0.25

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
        self.seen: dict[object, State] = {}
        self.task: asyncio.Task | None = None

    @contextlib.contextmanager
    def watch(self, run_id) -> Iterator[Watch]:
        watch = Watch()
        self.watches.setdefault(run_id, set()).add(watch)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield watch
        finally:
            watchers = self.watches.get(run_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self.watches[run_id]
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
            delay = POLL_MIN if changed else min(delay * 1.5, POLL_MAX)
            await asyncio.sleep(delay)

    def _wake(self, run_id) -> None:
        for watch in self.watches.get(run_id, ()):
            watch.changed.set()


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
    return Run.objects.filter(pk=run_id).first()


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
