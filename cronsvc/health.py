"""Liveness of beat and workers, for `GET /health`, `manage.py healthcheck` and
the compose health checks.

- Beat: the active beat renews the scheduler lease (crons.ticking) on every
  tick, at most CRONSVC_BEAT_MAX_INTERVAL apart; that renewal is its heartbeat.
  Beat is live while the lease was renewed less than CRONSVC_HEARTBEAT_STALE
  seconds ago. A stopped beat releases the lease (holder ""), a dead one stops
  renewing it: either way beat shows dead.
- Workers: every worker process writes a `WorkerHeartbeat` row every
  CRONSVC_HEARTBEAT_INTERVAL seconds from a bootstep thread of its own and
  deletes it on a warm shutdown. A worker is live while its row is younger
  than CRONSVC_HEARTBEAT_STALE.

Ages are computed on the database's clock, so hosts with skewed clocks agree.
Workers and beat import this module at start (CELERY_IMPORTS), which adds the
bootstep to the worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from celery import bootsteps
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Sum
from django.db.models.functions import Now
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc.celery import app
from cronsvc.models import BeatHeartbeat, WorkerHeartbeat
from cronsvc.wire import HealthOut

log = logging.getLogger(__name__)

# Rows of workers that died without a warm shutdown are removed after this long.
FORGET_AFTER = timedelta(days=1)


# --- writes ----------------------------------------------------------------


def worker_heartbeat_write(*, name: str, hostname: str, pid: int, concurrency: int = 0) -> None:
    """Record that worker `name` (with `concurrency` pool slots) is alive now
    (database clock)."""
    fields = {"hostname": hostname, "pid": pid, "concurrency": concurrency}
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

    def start(self, worker):
        self._name = worker.hostname
        self._concurrency = worker.concurrency or 0
        self._thread = threading.Thread(target=self._loop, name="cronsvc-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        hostname, pid = socket.gethostname(), os.getpid()
        try:
            worker_heartbeats_forget_dead()
        except DatabaseError as exc:
            log.warning("heartbeat: could not forget dead workers: %s", exc)
        while not self._stopping.is_set():
            try:
                close_old_connections()
                worker_heartbeat_write(
                    name=self._name, hostname=hostname, pid=pid, concurrency=self._concurrency
                )
            except DatabaseError as exc:
                log.warning("heartbeat of %s not written: %s", self._name, exc)
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


app.steps["worker"].add(WorkerHeartbeatStep)


# --- reads -----------------------------------------------------------------


@dataclass
class Component:
    status: str  # "ok" or "dead"
    seen_seconds_ago: float | None = None
    detail: str = ""
    nodes: list[dict] = field(default_factory=list)


@dataclass
class Health:
    database: Component
    beat: Component
    workers: Component

    @property
    def ok(self) -> bool:
        return all(c.status == "ok" for c in (self.database, self.beat, self.workers))

    def as_dict(self) -> dict:
        problems = [
            f"{name}: {c.detail}"
            for name, c in (
                ("database", self.database),
                ("beat", self.beat),
                ("workers", self.workers),
            )
            if c.status != "ok"
        ]
        out = {"status": "ok" if self.ok else "unhealthy"}
        if problems:
            out["detail"] = "; ".join(problems)
        for name in ("database", "beat", "workers"):
            component = asdict(getattr(self, name))
            if name != "workers":
                component.pop("nodes")
            out[name] = component
        return out


def db_now() -> datetime:
    from crons import ticking

    return ticking.db_now()


def beat_health(now: datetime, *, hostname: str | None = None) -> Component:
    """The active beat, from the scheduler lease; `hostname`: held from that host."""
    from crons.models import SchedulerLease
    from crons.ticking import LEASE_NAME

    lease = SchedulerLease.objects.filter(name=LEASE_NAME).first()
    stale = settings.CRONSVC_HEARTBEAT_STALE
    if lease is None or not lease.holder:
        return Component("dead", detail="no beat holds the scheduler lease")
    renewed = lease.expires_at - timedelta(seconds=settings.CRONSVC_BEAT_LEASE_SECONDS)
    age = max((now - renewed).total_seconds(), 0.0)
    if age > stale:
        return Component(
            "dead", round(age, 1), f"no beat tick for {age:.0f} s (limit {stale:.0f} s)"
        )
    if hostname is not None and lease.holder.split(":", 1)[0] != hostname:
        # Not the active beat: healthy as a standby while this host's beat
        # writes its heartbeat (it takes over when the lease expires).
        seen = (
            BeatHeartbeat.objects.filter(
                hostname=hostname, seen_at__gte=now - timedelta(seconds=stale)
            )
            .order_by("-seen_at")
            .values_list("seen_at", flat=True)
            .first()
        )
        if seen is None:
            return Component(
                "dead", round(age, 1),
                f"the scheduler lease is held by {lease.holder}, not {hostname}, and no "
                f"standby beat on {hostname} wrote a heartbeat in the last {stale:.0f} s",
            )
        return Component(
            "ok", round(max((now - seen).total_seconds(), 0.0), 1),
            f"standby; the scheduler lease is held by {lease.holder}",
        )
    return Component("ok", round(age, 1))


def live_worker_slots() -> int:
    """Pool slots of the live workers (heartbeat younger than
    CRONSVC_HEARTBEAT_STALE, on the database's clock)."""
    stale = timedelta(seconds=settings.CRONSVC_HEARTBEAT_STALE)
    return (
        WorkerHeartbeat.objects.filter(seen_at__gte=Now() - stale)
        .aggregate(slots=Sum("concurrency"))["slots"]
        or 0
    )


def workers_health(now: datetime, *, hostname: str | None = None) -> Component:
    """Live workers (heartbeat younger than CRONSVC_HEARTBEAT_STALE); `hostname`: on that host."""
    stale = settings.CRONSVC_HEARTBEAT_STALE
    rows = WorkerHeartbeat.objects.filter(seen_at__gte=now - timedelta(seconds=stale))
    if hostname is not None:
        rows = rows.filter(hostname=hostname)
    nodes = [
        {
            "name": row.name,
            "seen_seconds_ago": round(max((now - row.seen_at).total_seconds(), 0.0), 1),
        }
        for row in rows
    ]
    if not nodes:
        where = f" on {hostname}" if hostname else ""
        return Component("dead", detail=f"no worker heartbeat{where} in the last {stale:.0f} s")
    return Component("ok", min(n["seen_seconds_ago"] for n in nodes), nodes=nodes)


def health_get() -> Health:
    try:
        now = db_now()
        return Health(Component("ok"), beat_health(now), workers_health(now))
    except DatabaseError as exc:
        dead = Component("dead", detail=f"database unavailable ({type(exc).__name__})")
        unknown = Component("dead", detail="unknown (database unavailable)")
        return Health(dead, unknown, unknown)


class HealthApi(APIView):
    """GET /health: per-component status; 503 when the database, beat or every worker is down."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Liveness of the database, beat and workers",
        tags=["system"],
        responses={200: HealthOut, 503: HealthOut},
    )
    def get(self, request):
        health = health_get()
        return Response(health.as_dict(), status=200 if health.ok else 503)
