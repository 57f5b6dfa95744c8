"""A small typed helper for cronsvc's scheduler control endpoints, for users of
the official Python SDK (`langgraph_sdk`).

The endpoints are cronsvc's own (no LangGraph server has them), so the SDK has
no methods for them; they are reached through its HTTP client, `client.http`.
This module wraps those calls and types their answers:

    from langgraph_sdk import get_client, get_sync_client
    from cronsvc_client import AsyncCronControl, CronControl

    control = CronControl(get_sync_client(url="http://localhost:8123"))
    run = control.trigger(cron_id)                      # the run, as POST /runs answers
    report = control.backfill(cron_id, start, end)      # {"instants", "fired", ...}
    ticks = control.ticks(cron_id, limit=20, status="fired")
    page = control.ticks_page(cron_id, limit=20)        # {"ticks": [...], "total": n}
    control.schedule(cron_id, limit=5)                  # {"timezone", "next": [...]}

    acontrol = AsyncCronControl(get_client(url="http://localhost:8123"))
    run = await acontrol.trigger(cron_id)

Errors are the SDK's (`httpx.HTTPStatusError`, or its typed subclasses in
`langgraph_sdk.errors`), with the server's `detail`: 404 for an unknown cron,
409 when a trigger is refused, 422 for an invalid range or parameter.

It imports nothing from Django or the rest of cronsvc (scripts/import_rules.py
checks that), so a client machine needs only `langgraph-sdk`. Times in the
answers are ISO 8601 strings, as on the wire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast

import httpx
from langgraph_sdk.client import (
    HttpClient,
    LangGraphClient,
    SyncHttpClient,
    SyncLangGraphClient,
)
from langgraph_sdk.schema import Run, RunStatus

__all__ = [
    "AsyncCronControl",
    "BackfillReport",
    "CronControl",
    "OverlapPolicy",
    "Schedule",
    "Tick",
    "TickKind",
    "TickStatus",
    "TicksPage",
]

TickKind = Literal["scheduled", "manual", "backfill"]
TickStatus = Literal["fired", "skipped", "rejected"]
OverlapPolicy = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]


class Tick(TypedDict):
    """One tick of a cron (`GET /runs/crons/{cron_id}/ticks`)."""

    scheduled_at: str
    """The instant (the exactly-once key); a manual tick: the second it came."""
    fire_at: str
    """When it fired, or was to fire: its instant plus the cron's jitter offset
    (the run starts no earlier); a manual tick: the moment it came."""
    kind: TickKind
    status: TickStatus
    reason: str
    """Why it was skipped or rejected; how it fired ("triggered", "backfilled")."""
    run_id: str | None
    run_status: RunStatus | None
    """None: no run, or the run was deleted (e.g. with a stateless run's thread)."""
    attempts: int | None
    """The run's attempts so far; None: no run."""
    created_at: str


class TicksPage(TypedDict):
    """A page of ticks, newest first, and how many ticks match in all
    (the `X-Pagination-Total` header)."""

    ticks: list[Tick]
    total: int


class BackfillReport(TypedDict):
    """The answer of `POST /runs/crons/{cron_id}/backfill`."""

    instants: int
    """Instants of the schedule in [start, end)."""
    fired: int
    """Instants this call fired."""
    already_fired: int
    """Instants that had fired already (left alone)."""
    rejected: int
    """Instants refused (multitask_strategy reject, the owner's permissions)."""
    skipped: int
    """Instants the backfill's overlap_policy skipped."""


class Schedule(TypedDict):
    """The answer of `GET /runs/crons/{cron_id}/schedule`."""

    timezone: str
    """The cron's timezone ("UTC" when it has none)."""
    next: list[str]
    """The next instants from now, in UTC, ascending (ISO 8601)."""


def _iso(value: datetime | str) -> str:
    """ISO 8601 for the wire; a naive datetime is taken as UTC."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _path(cron_id: str, endpoint: str) -> str:
    return f"/runs/crons/{cron_id}/{endpoint}"


def _trigger_body(overlap_policy: str | None) -> dict[str, Any]:
    return {} if overlap_policy is None else {"overlap_policy": overlap_policy}


def _backfill_body(
    start: datetime | str, end: datetime | str, overlap_policy: OverlapPolicy | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"start": _iso(start), "end": _iso(end)}
    if overlap_policy is not None:
        body["overlap_policy"] = overlap_policy
    return body


def _ticks_params(limit: int, offset: int, status: TickStatus | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status is not None:
        params["status"] = status
    return params


class _Total:
    """Reads X-Pagination-Total off the response (the SDK's `on_response`)."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, response: httpx.Response) -> None:
        self.value = int(response.headers.get("X-Pagination-Total", 0))


class CronControl:
    """cronsvc's scheduler control through a sync SDK client
    (`langgraph_sdk.get_sync_client(...)`, or its `.http`)."""

    def __init__(self, client: SyncLangGraphClient | SyncHttpClient) -> None:
        self.http: SyncHttpClient = (
            client.http if isinstance(client, SyncLangGraphClient) else client
        )

    def trigger(self, cron_id: str, *, overlap_policy: OverlapPolicy | None = None) -> Run:
        """Fire the cron once, now (a manual tick; also a disabled cron), with
        the cron's overlap_policy or `overlap_policy` for this tick only.
        Returns its run; 409 when the tick is refused."""
        return cast(
            Run, self.http.post(_path(cron_id, "trigger"), json=_trigger_body(overlap_policy))
        )

    def backfill(
        self,
        cron_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        overlap_policy: OverlapPolicy | None = None,
    ) -> BackfillReport:
        """Fire each instant of [start, end) that has not fired, once
        (end at most now; at most 1,000 instants), overlapping as
        `overlap_policy` says (default allow_all)."""
        body = _backfill_body(start, end, overlap_policy)
        return cast(BackfillReport, self.http.post(_path(cron_id, "backfill"), json=body))

    def ticks(
        self, cron_id: str, *, limit: int = 10, offset: int = 0, status: TickStatus | None = None
    ) -> list[Tick]:
        """The cron's ticks, newest first."""
        return self.ticks_page(cron_id, limit=limit, offset=offset, status=status)["ticks"]

    def ticks_page(
        self, cron_id: str, *, limit: int = 10, offset: int = 0, status: TickStatus | None = None
    ) -> TicksPage:
        """The cron's ticks, newest first, with the total that match."""
        total = _Total()
        ticks = self.http.get(
            _path(cron_id, "ticks"),
            params=_ticks_params(limit, offset, status),
            on_response=total,
        )
        return {"ticks": cast(list[Tick], ticks), "total": total.value}

    def schedule(self, cron_id: str, *, limit: int = 10) -> Schedule:
        """The cron's next `limit` instants from now, as beat computes them."""
        return cast(Schedule, self.http.get(_path(cron_id, "schedule"), params={"limit": limit}))


class AsyncCronControl:
    """cronsvc's scheduler control through an async SDK client
    (`langgraph_sdk.get_client(...)`, or its `.http`)."""

    def __init__(self, client: LangGraphClient | HttpClient) -> None:
        self.http: HttpClient = client.http if isinstance(client, LangGraphClient) else client

    async def trigger(self, cron_id: str, *, overlap_policy: OverlapPolicy | None = None) -> Run:
        """Fire the cron once, now (a manual tick; also a disabled cron), with
        the cron's overlap_policy or `overlap_policy` for this tick only.
        Returns its run; 409 when the tick is refused."""
        return cast(
            Run,
            await self.http.post(_path(cron_id, "trigger"), json=_trigger_body(overlap_policy)),
        )

    async def backfill(
        self,
        cron_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        overlap_policy: OverlapPolicy | None = None,
    ) -> BackfillReport:
        """Fire each instant of [start, end) that has not fired, once
        (end at most now; at most 1,000 instants), overlapping as
        `overlap_policy` says (default allow_all)."""
        body = _backfill_body(start, end, overlap_policy)
        return cast(BackfillReport, await self.http.post(_path(cron_id, "backfill"), json=body))

    async def ticks(
        self, cron_id: str, *, limit: int = 10, offset: int = 0, status: TickStatus | None = None
    ) -> list[Tick]:
        """The cron's ticks, newest first."""
        page = await self.ticks_page(cron_id, limit=limit, offset=offset, status=status)
        return page["ticks"]

    async def ticks_page(
        self, cron_id: str, *, limit: int = 10, offset: int = 0, status: TickStatus | None = None
    ) -> TicksPage:
        """The cron's ticks, newest first, with the total that match."""
        total = _Total()
        ticks = await self.http.get(
            _path(cron_id, "ticks"),
            params=_ticks_params(limit, offset, status),
            on_response=total,
        )
        return {"ticks": cast(list[Tick], ticks), "total": total.value}

    async def schedule(self, cron_id: str, *, limit: int = 10) -> Schedule:
        """The cron's next `limit` instants from now, as beat computes them."""
        return cast(
            Schedule, await self.http.get(_path(cron_id, "schedule"), params={"limit": limit})
        )
