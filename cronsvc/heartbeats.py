"""Heartbeats of beat and workers: the rows `cronsvc.health` reads.

- Every worker process writes a `WorkerHeartbeat` row every
  CRONSVC_HEARTBEAT_INTERVAL seconds from a bootstep thread of its own
  (`WorkerHeartbeatStep`, added to the worker by cronsvc.celery) and deletes
  it on a warm shutdown. Its pool size is recorded too: `live_worker_slots`
  tells how many wake-ups a burst of ready runs can use (runs.wakeups).
- Each worker also claims its queue on a Redis broker (cronsvc.broker_owner)
  and warns when another cronsvc instance consumes it.
- Every beat, active or standby, writes a `BeatHeartbeat` row (crons.scheduler).

Times are the database's (`Now()`), so hosts with skewed clocks agree.
Importing this module has no side effect.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from celery import bootsteps
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Sum
from django.db.models.functions import Now

from cronsvc.broker_owner import queue_claim_or_warn
from cronsvc.celery import ROLE_WEBHOOKS, app, webhook_queue, worker_role
from cronsvc.models import BeatHeartbeat, WorkerHeartbeat

log = logging.getLogger(__name__)

# Rows of workers that died without a warm shutdown are removed after this long.
FORGET_AFTER = timedelta(days=1)


# --- writes ----------------------------------------------------------------


def worker_heartbeat_write(
    *, name: str, hostname: str, pid: int, concurrency: int = 0, role: str = "runs"
) -> None:
    """Record that worker `name` (with `concurrency` pool slots, of `role`
    "runs" or "webhooks") is alive now (database clock)."""
    fields = {"hostname": hostname, "pid": pid, "concurrency": concurrency, "role": role}
    updated = WorkerHeartbeat.objects.filter(name=name).update(**fields, seen_at=Now())
    if not updated:
        WorkerHeartbeat.objects.update_or_create(
            name=name, defaults={**fields, "started_at": Now(), "seen_at": Now()}
        )


def beat_heartbeat_write(*, name: str, hostname: str, pid: int) -> None:
    """Record that beat `name` (its lease holder id) is alive now (database clock)."""
    updated = BeatHeartbeat.objects.filter(name=name).update(seen_at=Now())
    if not updated:
        BeatHeartbeat.objects.update_or_create(
            name=name,
            defaults={"hostname": hostname, "pid": pid, "started_at": Now(), "seen_at": Now()},
        )


def beat_heartbeat_delete(*, name: str) -> None:
    BeatHeartbeat.objects.filter(name=name).delete()


def worker_heartbeat_delete(*, name: str) -> None:
    WorkerHeartbeat.objects.filter(name=name).delete()


def worker_heartbeats_forget_dead() -> int:
    """Delete the rows of workers silent for FORGET_AFTER; returns how many."""
    deleted, _ = WorkerHeartbeat.objects.filter(seen_at__lt=Now() - FORGET_AFTER).delete()
    BeatHeartbeat.objects.filter(seen_at__lt=Now() - FORGET_AFTER).delete()
    return deleted


class WorkerHeartbeatStep(bootsteps.StartStopStep):
    """Writes the worker's heartbeat every CRONSVC_HEARTBEAT_INTERVAL seconds.

    From a thread of its own: a database write must not stall the consumer's
    event loop, and a database blip only delays the next beat. Stopped (row
    deleted) at the start of a warm shutdown: a worker finishing its in-flight
    runs takes no new ones, so it no longer counts as live."""

    label = "cronsvc heartbeat"
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = ""
        self._concurrency = 0
        self._role = "runs"

    def start(self, worker):
        self._name = worker.hostname
        self._concurrency = worker.concurrency or 0
        self._role = worker_role(worker)
        self._thread = threading.Thread(target=self._loop, name="cronsvc-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        hostname, pid = socket.gethostname(), os.getpid()
        queue = webhook_queue() if self._role == ROLE_WEBHOOKS else app.conf.task_default_queue
        other: str | None = None
        try:
            worker_heartbeats_forget_dead()
        except DatabaseError as exc:
            log.warning("heartbeat: could not forget dead workers: %s", exc)
        while not self._stopping.is_set():
            try:
                close_old_connections()
                worker_heartbeat_write(
                    name=self._name,
                    hostname=hostname,
                    pid=pid,
                    concurrency=self._concurrency,
                    role=self._role,
                )
            except DatabaseError as exc:
                log.warning("heartbeat of %s not written: %s", self._name, exc)
            other = queue_claim_or_warn(queue, warned=other)
            self._stopping.wait(settings.CRONSVC_HEARTBEAT_INTERVAL)
        try:
            worker_heartbeat_delete(name=self._name)
        except DatabaseError as exc:
            log.warning("heartbeat of %s not removed: %s", self._name, exc)
        finally:
            connection.close()

    def stop(self, worker):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    terminate = stop


# --- reads -----------------------------------------------------------------


def live_worker_slots() -> int:
    """Pool slots of the live run workers (heartbeat younger than
    CRONSVC_HEARTBEAT_STALE, on the database's clock); webhook workers' slots
    take no runs."""
    stale = timedelta(seconds=settings.CRONSVC_HEARTBEAT_STALE)
    return (
        WorkerHeartbeat.objects.filter(seen_at__gte=Now() - stale, role="runs").aggregate(
            slots=Sum("concurrency")
        )["slots"]
        or 0
    )
