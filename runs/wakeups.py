"""Every Celery message cronsvc publishes about runs, and when.

The only module that publishes them, by task name (the task bodies are in
runs.tasks; nothing imports them to send a message):

- `runs.drain` — a wake-up: a worker slot claims ready runs until none is
  left. Published after the commit of the run that needs it
  (`wake_thread_after_commit`), or in numbers (`wake_workers`) by beat, the
  reaper and the reconciler. A wake-up only claims, so a spare or duplicate
  one claims nothing.
- `runs.deliver_webhook` — a finished run's webhook delivery, after the
  commit of its finish (`deliver_webhook_after_commit`), or again by the
  reconciler for a delivery whose message was lost. On its own queue
  (`<queue>-webhooks`, cronsvc.celery.webhook_queue), consumed by webhook
  workers only: a slow receiver never holds a run's slot.
- `runs.delete_stateless_thread` — stateless runs' threads, deleted a
  grace period after the commit of the run's end (`delete_thread_after_commit`):
  one message per thread, or, from a worker's drain and from the API's
  streams as they end, one per batch of the threads asked within a second
  (`thread_deletions_batched`, `batched=True`); the reconciler deletes the
  ones whose message was lost.

Other messages go to the queue Celery routes each task to (`task_routes`,
else `task_default_queue`), as `Task.delay` would send them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from cronsvc.celery import app, webhook_queue
from cronsvc.heartbeats import live_worker_slots

log = logging.getLogger(__name__)

DRAIN = "runs.drain"
DELIVER_WEBHOOK = "runs.deliver_webhook"
DELETE_STATELESS_THREAD = "runs.delete_stateless_thread"


def _send(name: str, args: tuple[str, ...] = (), **options: Any) -> None:
    # As Task.apply_async sends it: the app's result setting, routed by name.
    app.send_task(name, args, ignore_result=app.conf.task_ignore_result, **options)


@contextmanager
def wake_lost_is_logged() -> Iterator[None]:
    """A wake-up the broker refused (down, restarting) is logged, not raised:
    the run is committed, and the reconciler (runs.leases) wakes a worker for
    it after CRONSVC_RECONCILE_AFTER seconds. Raising would fail an API call
    whose run exists, or stop beat."""
    try:
        yield
    except (KombuOperationalError, OSError) as exc:
        log.warning(
            "wake-up not published (%s); the reconciler wakes a worker within %g s",
            exc,
            settings.CRONSVC_RECONCILE_AFTER + settings.CRONSVC_RECONCILE_INTERVAL,
        )


def wake_thread(thread_id: UUID | str) -> None:
    """Wake a worker for `thread_id`'s runs (then any thread's)."""
    with wake_lost_is_logged():
        _send(DRAIN, (str(thread_id),))


def wake_thread_after_commit(thread_id: UUID | str) -> None:
    """`wake_thread` once the caller's transaction commits (at once without one)."""
    transaction.on_commit(lambda: wake_thread(thread_id))


def wake_thread_later_after_commit(thread_id: UUID | str, countdown: float) -> None:
    """`wake_thread`, `countdown` seconds after the caller's transaction
    commits (a run waiting out its retry backoff). A lost one is the
    reconciler's, as for any ready run."""

    def wake() -> None:
        with wake_lost_is_logged():
            _send(DRAIN, (str(thread_id),), countdown=countdown)

    transaction.on_commit(wake)


def wake_another() -> None:
    """One wake-up for any thread, from a worker handing its remaining runs
    over on a warm shutdown. Not guarded: the task fails loudly and its
    message is redelivered."""
    _send(DRAIN)


def wake_workers(count: int) -> None:
    """Publish `count` wake-ups over one connection; each worker slot that takes
    one drains ready runs until none is left."""
    with wake_lost_is_logged(), app.producer_or_acquire() as producer:
        for _ in range(count):
            _send(DRAIN, producer=producer)


def wake_workers_after_commit(count: int) -> None:
    """`wake_workers(count)` once the caller's transaction commits."""
    transaction.on_commit(lambda: wake_workers(count))


def wake_fanout(ready: int) -> int:
    """Wake-ups for `ready` runs that became claimable at once: one per live
    worker slot (their heartbeats say how many), at least CRONSVC_WAKE_FANOUT
    (heartbeats not written yet), never more than the runs. Each slot woken
    drains ready runs until none is left, so a burst uses every slot."""
    return min(ready, max(int(settings.CRONSVC_WAKE_FANOUT), live_worker_slots()))


def deliver_webhook(run_id: UUID | str) -> None:
    """Publish one delivery of `run_id`'s webhook, on the webhook queue."""
    _send(DELIVER_WEBHOOK, (str(run_id),), queue=webhook_queue())


def deliver_webhook_after_commit(run_id: UUID | str) -> None:
    """`deliver_webhook` once the caller's transaction commits. Robust: a broker
    blip must not fail the finish; the reconciler re-enqueues deliveries left
    pending."""
    transaction.on_commit(lambda: deliver_webhook(str(run_id)), robust=True)


def delete_stateless_thread(
    thread_id: UUID | str, countdown: float, *, batched: bool = False
) -> None:
    """Publish the deletion of a stateless run's thread, `countdown` seconds on.

    `batched`, or inside `thread_deletions_batched` (a worker's drain): the
    deletion joins the process's batch instead: one message for the threads
    whose deletion it was asked within DELETION_BATCH_WINDOW, not one per run."""
    if batched or getattr(_local, "batching", False):
        _deletions.add(str(thread_id), countdown)
        return
    _send(DELETE_STATELESS_THREAD, (str(thread_id),), countdown=countdown)


# How long a batch of stateless threads' deletions gathers before its one
# message is published (the deletion then comes its countdown later).
DELETION_BATCH_WINDOW = 1.0

_local = threading.local()


class _DeletionBatch:
    """Stateless threads to delete, gathered by a process (a worker's slots, an
    API's ending streams) and published
    as one `runs.delete_stateless_thread` message (its arguments: the thread
    ids) at the latest DELETION_BATCH_WINDOW after the first joined, by a timer,
    or when the drain ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._countdown = 0.0
        self._timer: threading.Timer | None = None

    def add(self, thread_id: str, countdown: float) -> None:
        with self._lock:
            self._ids.append(thread_id)
            self._countdown = max(self._countdown, countdown)
            if self._timer is None:
                self._timer = threading.Timer(DELETION_BATCH_WINDOW, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            ids, countdown, timer = self._ids, self._countdown, self._timer
            self._ids, self._countdown, self._timer = [], 0.0, None
        if timer is not None:
            timer.cancel()
        if ids:
            # A lost message is the reconciler's (stateless_threads_reconcile).
            with wake_lost_is_logged():
                _send(DELETE_STATELESS_THREAD, tuple(ids), countdown=countdown)


_deletions = _DeletionBatch()


@contextmanager
def thread_deletions_batched() -> Iterator[None]:
    """Gather the stateless threads' deletions published meanwhile on this
    thread (after the commits of the runs it finishes) into the process's
    batch; published when it ends, if not before."""
    _local.batching = True
    try:
        yield
    finally:
        _local.batching = False
        _deletions.flush()


def delete_thread_after_commit(thread_id: UUID | str, *, batched: bool = False) -> None:
    """After commit, delete a stateless run's thread once it is idle. Deferred
    a little (CRONSVC_STATELESS_THREAD_GRACE), so a client waiting on the run
    still reads its result (and its webhook its values). `batched`: in the
    process's batch (`delete_stateless_thread`), published within
    DELETION_BATCH_WINDOW by its timer."""
    transaction.on_commit(
        lambda: delete_stateless_thread(
            str(thread_id), settings.CRONSVC_STATELESS_THREAD_GRACE, batched=batched
        )
    )
