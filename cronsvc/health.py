"""Liveness of beat and workers, for `GET /health`, `manage.py healthcheck` and
the compose health checks.

- Beat: the active beat renews the scheduler lease (crons.lease) on every
  tick, at most CRONSVC_BEAT_MAX_INTERVAL apart; that renewal is its heartbeat.
  Beat is live while the lease was renewed less than CRONSVC_HEARTBEAT_STALE
  seconds ago. A stopped beat releases the lease (holder ""), a dead one stops
  renewing it: either way beat shows dead.
- Workers: every worker process writes a `WorkerHeartbeat` row
  (cronsvc.heartbeats). A worker is live while its row is younger than
  CRONSVC_HEARTBEAT_STALE. Run workers make `workers`; webhook workers
  (`--webhooks`) are reported apart as `webhooks`, which does not decide the
  status: without one, deliveries wait on their queue (and the reconciler),
  runs do not.

`GET /health` tells anyone whether the service is healthy (200 or 503, and
`{"status": "ok" | "unhealthy"}`); the components, their reasons and the
workers' node names only to a caller the API serves (a valid API key, or any
caller when no keys are configured) or a staff user's admin session.

Ages are computed on the database's clock, so hosts with skewed clocks agree.
Only reads: importing this module has no side effect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from crons.lease import LEASE_NAME
from crons.models import SchedulerLease
from cronsvc.dbclock import db_now
from cronsvc.http.auth import api_key_is_valid
from cronsvc.models import BeatHeartbeat, WorkerHeartbeat
from cronsvc.wire import HealthOut

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
    webhooks: Component | None = None  # reported, not part of `ok`

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
        for name in ("database", "beat", "workers", "webhooks"):
            if getattr(self, name) is None:
                continue
            component = asdict(getattr(self, name))
            if name not in ("workers", "webhooks"):
                component.pop("nodes")
            out[name] = component
        return out

    def summary(self) -> dict:
        """What an anonymous caller sees: healthy or not, nothing more."""
        return {"status": "ok" if self.ok else "unhealthy"}


def beat_health(now: datetime, *, hostname: str | None = None) -> Component:
    """The active beat, from the scheduler lease; `hostname`: held from that host."""
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
                "dead",
                round(age, 1),
                f"the scheduler lease is held by {lease.holder}, not {hostname}, and no "
                f"standby beat on {hostname} wrote a heartbeat in the last {stale:.0f} s",
            )
        return Component(
            "ok",
            round(max((now - seen).total_seconds(), 0.0), 1),
            f"standby; the scheduler lease is held by {lease.holder}",
        )
    return Component("ok", round(age, 1))


def workers_health(now: datetime, *, hostname: str | None = None, role: str = "runs") -> Component:
    """Live workers of `role` ("runs" or "webhooks": heartbeat younger than
    CRONSVC_HEARTBEAT_STALE); `hostname`: on that host."""
    stale = settings.CRONSVC_HEARTBEAT_STALE
    rows = WorkerHeartbeat.objects.filter(seen_at__gte=now - timedelta(seconds=stale), role=role)
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
        kind = "worker" if role == "runs" else "webhook worker"
        return Component("dead", detail=f"no {kind} heartbeat{where} in the last {stale:.0f} s")
    return Component("ok", min(n["seen_seconds_ago"] for n in nodes), nodes=nodes)


def health_get() -> Health:
    try:
        now = db_now()
        return Health(
            Component("ok"),
            beat_health(now),
            workers_health(now),
            workers_health(now, role="webhooks"),
        )
    except DatabaseError as exc:
        dead = Component("dead", detail=f"database unavailable ({type(exc).__name__})")
        unknown = Component("dead", detail="unknown (database unavailable)")
        return Health(dead, unknown, unknown)


def may_see_details(request) -> bool:
    """A caller the API serves (a valid API key, or anyone when no keys are
    configured), or a staff user's admin session."""
    if api_key_is_valid(request.headers.get("x-api-key")):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


class HealthApi(APIView):
    """GET /health: 503 when the database, beat or every run worker is down;
    per-component details only to callers who may see them (may_see_details)."""

    # The session, for a staff user reading it from the admin; the API key is
    # checked by may_see_details (no key: the summary, not a 403).
    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Liveness of the database, beat and workers",
        tags=["system"],
        responses={200: HealthOut, 503: HealthOut},
    )
    def get(self, request):
        health = health_get()
        body = health.as_dict() if may_see_details(request) else health.summary()
        return Response(body, status=200 if health.ok else 503)
