"""The one place a cron's tick becomes a run.

`run_spec(cron, instant)` decides everything about the run a tick creates and
returns it as a frozen `RunSpec`; the writers below store specs and decide
nothing themselves:

- `fire_tick` — one tick through `runs.services.run_create`, which makes the
  overlap decisions (`reject`, `interrupt`, `rollback`, the pending cap) under
  the thread's row lock. Used by the scheduler for late ticks and for crons a
  batch cannot take (`crons.ticking`), by run-now (`cron_run_now`), and by
  the API's trigger (a `manual` tick: keyed apart from the instants, its run
  has no `scheduled_at`) and backfill (`backfill` ticks of past instants;
  an instant recorded skipped or rejected is fired by `refire_tick`)
  (crons.services).
- `fire_batch` — many ticks with set-based writes and no decision: on
  PostgreSQL one statement, `crons/sql/fire_batch.sql`, fed the specs' values
  as one jsonb array (`fire_batch_postgres`); on other backends bulk ORM
  inserts (`fire_batch_orm`). Only `batchable` crons are given to it.

So a tick fired on time, late, ahead of its instant in a batch, or by run-now
stores the same run, tick and thread (tests/integration/test_dispatch_paths.py).

The rules, decided here once:

- Run kwargs are the cron's payload without `NOT_RUN_KWARGS` (keys that
  describe the cron, or that have a column of their own on the run).
- The run's metadata is the cron's current `metadata`, then the payload's
  `metadata`, plus `cron_id`; its `config.configurable` carries `cron_id`
  (as on the LangGraph Server).
- `multitask_strategy` is the payload's (default `enqueue`), on every path.
- `on_completion` is the cron's stored `on_run_completed` for a stateless
  cron (its default, `delete`, is decided and stored when the cron is
  created: crons.services), and None for a cron on a thread.
- Thread: a thread cron's run goes on the cron's thread; a stateless cron's
  run gets a new thread per tick. Either way the thread ends up busy, with
  the assistant's `graph_id`, and `thread_metadata` merged into its metadata:
  `{graph_id, assistant_id}` — the keys run_create stamps on every thread it
  runs on — plus, for a new stateless thread, `cron_id`. So a stateless
  cron's thread has `{cron_id, graph_id, assistant_id}` whichever path fired
  it (the fuller of the two forms the paths used to write).
- `batchable(cron)` (and its query form `BATCHABLE`): whether a cron's tick
  needs no decision when it is written, so a batch may write it, even ahead
  of its instant: stateless crons and crons on a thread that enqueue.
- A cron with an owner (custom auth: `user_id`, and the user stored when it
  was created) fires as its owner: `run_spec` runs `threads.create_run`
  (whose handler may change the run's metadata and kwargs, and whose filter
  the cron's thread must match), `assistants.read`, and for a stateless cron
  `threads.create` (whose handler may change the new thread's metadata, e.g.
  stamp the owner) as that user, and the run's `config.configurable` carries
  `langgraph_auth_user_id`, `langgraph_auth_user` and
  `langgraph_auth_permissions`. A denial raises `OwnerDenied`: the tick is
  recorded `rejected` with the reason, and nothing runs. Crons without an
  owner (made before auth was configured, or by the operator) fire as before.

- A stateless cron's `overlap_policy` (other than `allow_all`) is applied by
  `fire_tick` under the cron's row lock, against the cron's runs running or
  pending at or past their instant: `skip` records the tick `skipped`;
  `buffer_one`/`buffer_all` fire it with `after_run_id` (no worker claims
  the run while that run is pending or running; buffer_one skips a tick
  while one waits); `cancel_other` cancels them in the tick's savepoint,
  then fires, its run waiting for a cancelled running run to stop. Such crons, and crons with `max_runs` (counted by
  crons.ticking), are not batchable: nothing is prepared ahead for them.

- Catch-up and jitter (scheduler control) stay on the batch path, which
  implements them: a cron's `catchup_window` (crons.ticking: a batch only
  takes a cron late by less than its window and by less than one period, so
  one instant is due and `catchup` has nothing to choose; later ones go one by
  one through crons.ticking's catch-up) and its `jitter`: `tick_jitter(cron,
  instant)` (crons.firetime.jitter_offset: a hash of (cron, instant), in
  [0, jitter) and before the next instant) is decided here once, in the spec
  (`RunSpec.jitter`). Every writer stores `not_before` (instant + offset) on
  the run, which no worker claims before it (runs.lifecycle.READY), and as
  the tick's `fire_at`; `scheduled_at` stays the instant (the exactly-once
  key). A batch wakes workers at `not_before` (crons.ticking's
  `report.prepared`), ahead of it or not. A manual trigger, a backfill and
  run-now (`cron_run_now`) are not jittered (due at once). A cron without jitter stores `not_before`
  null: its runs are as before.

Growing the spec (the next issues): a per-policy batch rule is a change to
`batchable`/`BATCHABLE`. None of these touches the SQL, which stores the
spec's values as given.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone as djtz

from crons import firetime
from crons.models import Cron, Tick
from cronsvc import custom_auth, metrics
from cronsvc.dbclock import db_now, db_now_sql
from cronsvc.errors import AuthFailed, Forbidden
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_auth_q
from runs.lifecycle import run_cancel
from runs.models import Run
from runs.services import ThreadBusy, TooManyPending, run_create
from threads.models import Thread

# A cron's payload is its create request as sent (as the LangGraph Server
# keeps it). Keys of it that describe the cron itself:
CRON_KEYS = frozenset({"schedule", "timezone", "end_time", "enabled", "on_run_completed"})
# cronsvc's own cron fields (scheduler control): stored in columns of their own,
# never in the payload (crons.apis leaves them out of it); the read-only ones
# sent back (a cron echoed into a PATCH) are ignored.
POLICY_KEYS = frozenset(
    {
        "overlap_policy",
        "start_time",
        "max_runs",
        "remaining_runs",
        "paused_reason",
        "catchup_window",
        "catchup",
        "jitter",
        "retry_policy",
        "max_consecutive_failures",
        "consecutive_failures",
        "last_run_date",
        "last_run_status",
    }
)
NO_JITTER = timedelta(0)
# Payload keys that are not run kwargs: the cron's own, and those the run has
# a column or rule of its own for.
NOT_RUN_KWARGS = CRON_KEYS | POLICY_KEYS | {"assistant_id", "metadata", "multitask_strategy"}

SQL_DIR = Path(__file__).resolve().parent / "sql"


@dataclass(frozen=True)
class RunSpec:
    """The run (and tick, and thread) one tick of a cron creates. Values only:
    ids of the new run and thread are the writers' (neither is decided by
    the cron). Its dicts are not to be changed."""

    cron_id: uuid.UUID
    scheduled_at: datetime  # the tick's instant: Tick.scheduled_at and Run.scheduled_at
    assistant_id: uuid.UUID
    graph_id: str
    thread_id: uuid.UUID | None  # the cron's thread; None: a new thread (stateless)
    thread_metadata: dict[str, Any]  # merged into the thread's metadata (a new one's is empty)
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    multitask_strategy: str
    on_completion: str | None
    jitter: timedelta = NO_JITTER  # the tick's offset from its instant (tick_jitter)

    @property
    def not_before(self) -> datetime:
        """Not before this instant may a worker take the run: the tick's
        instant plus its jitter offset (the tick's fire_at)."""
        return self.scheduled_at + self.jitter

    @property
    def stateless(self) -> bool:
        return self.thread_id is None

    def run_fields(self) -> dict[str, Any]:
        """The Run's own fields, as every writer stores them (thread and
        assistant are each writer's to give)."""
        return {
            "kwargs": self.kwargs,
            "metadata": self.metadata,
            "multitask_strategy": self.multitask_strategy,
            "on_completion": self.on_completion,
            "cron_id": self.cron_id,
            "scheduled_at": self.scheduled_at,
            # Null without a jitter: the run is due at its instant, as before.
            "not_before": self.not_before if self.jitter else None,
        }


def _strategy(payload: dict[str, Any]) -> str:
    return payload.get("multitask_strategy") or Run.MultitaskStrategy.ENQUEUE


def _run_kwargs(cron: Cron, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's run kwargs, with `cron_id` in `config.configurable`."""
    kwargs = {k: v for k, v in payload.items() if k not in NOT_RUN_KWARGS}
    config = dict(kwargs.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), "cron_id": str(cron.cron_id)}
    kwargs["config"] = config
    return kwargs


class OwnerDenied(Exception):
    """The cron's owner may not run its tick (custom auth); the reason is the tick's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:255]


def cron_owner(cron: Cron) -> custom_auth.AuthUser | None:
    """The user a cron's ticks run as: its owner when custom auth is
    configured and the cron has one; None (as the operator) otherwise."""
    if not cron.user_id or not custom_auth.enabled():
        return None
    if isinstance(cron.owner, dict) and cron.owner.get("identity") == cron.user_id:
        return custom_auth.AuthUser.from_dict(cron.owner)
    return custom_auth.AuthUser(cron.user_id)


def _as_owner(
    cron: Cron,
    user: custom_auth.AuthUser,
    *,
    thread_metadata: dict[str, Any],
    kwargs: dict[str, Any],
    metadata: dict[str, Any],
    strategy: str,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """thread_metadata, kwargs and metadata of a tick as its owner's handlers
    leave them; OwnerDenied when one refuses or its filter hides the thread or
    the assistant."""
    who = f"as its owner {user.identity!r}"
    step = "threads.create_run"
    try:
        with custom_auth.acting_as(user):
            value: dict[str, Any] = {
                "thread_id": cron.thread_id,
                "assistant_id": cron.assistant_id,
                "run_id": None,
                "status": "pending",
                "metadata": dict(metadata),
                "prevent_insert_if_inflight": strategy == Run.MultitaskStrategy.REJECT,
                "multitask_strategy": strategy,
                "if_not_exists": "reject",
                "after_seconds": 0,
                "kwargs": dict(kwargs),
            }
            thread_filter = custom_auth.authorize("threads", "create_run", value)
            if (
                cron.thread_id is not None
                and not Thread.objects.filter(pk=cron.thread_id)
                .filter(custom_auth.filter_q(thread_filter))
                .exists()
            ):
                raise OwnerDenied(f"{step} {who}: thread {cron.thread_id} not found")
            metadata = {**(value.get("metadata") or {}), "cron_id": str(cron.cron_id)}
            kwargs = dict(value.get("kwargs") or {})
            step = "assistants.read"
            readable = assistant_auth_q("read", {"assistant_id": cron.assistant_id})
            if not Assistant.objects.filter(pk=cron.assistant_id).filter(readable).exists():
                raise OwnerDenied(f"{step} {who}: assistant {cron.assistant_id} not found")
            if cron.thread_id is None:
                step = "threads.create"
                new: dict[str, Any] = {
                    "thread_id": None,
                    "metadata": dict(thread_metadata),
                    "if_exists": "raise",
                }
                custom_auth.authorize("threads", "create", new)
                thread_metadata = {**(new.get("metadata") or {}), **thread_metadata}
    except (Forbidden, AuthFailed) as exc:
        raise OwnerDenied(f"{step} {who}: {exc.detail}") from exc
    return thread_metadata, custom_auth.with_user_configurable(kwargs, user), metadata


def tick_jitter(cron: Cron, instant: datetime) -> timedelta:
    """How late the scheduled tick of `cron` at `instant` fires: its offset in
    [0, jitter), before the schedule's next instant (crons.firetime)."""
    if not cron.jitter:
        return NO_JITTER
    try:
        nxt: datetime | None = firetime.next_fire(cron.schedule, cron.timezone, instant)
    except firetime.InvalidSchedule:  # no next instant (near datetime.max)
        nxt = None
    return firetime.jitter_offset(str(cron.cron_id), instant, cron.jitter, nxt)


def run_spec(cron: Cron, instant: datetime, *, jitter: timedelta | None = None) -> RunSpec:
    """What the tick of `cron` at `instant` creates (see the module's rules),
    `jitter` after its instant (None: the scheduled tick's, `tick_jitter`).
    OwnerDenied when the cron's owner may not run it."""
    payload = cron.payload or {}
    assistant = cron.assistant
    stamp = {"graph_id": assistant.graph_id, "assistant_id": str(assistant.assistant_id)}
    stateless = cron.thread_id is None
    thread_metadata = {"cron_id": str(cron.cron_id), **stamp} if stateless else stamp
    kwargs = _run_kwargs(cron, payload)
    metadata = {
        **(cron.metadata or {}),
        **(payload.get("metadata") or {}),
        "cron_id": str(cron.cron_id),
    }
    strategy = _strategy(payload)
    owner = cron_owner(cron)
    if owner is not None:
        thread_metadata, kwargs, metadata = _as_owner(
            cron,
            owner,
            thread_metadata=thread_metadata,
            kwargs=kwargs,
            metadata=metadata,
            strategy=strategy,
        )
    return RunSpec(
        cron_id=cron.cron_id,
        scheduled_at=instant,
        assistant_id=assistant.assistant_id,
        graph_id=assistant.graph_id,
        thread_id=cron.thread_id,
        thread_metadata=thread_metadata,
        kwargs=kwargs,
        metadata=metadata,
        multitask_strategy=strategy,
        on_completion=cron.on_run_completed if stateless else None,
        jitter=tick_jitter(cron, instant) if jitter is None else jitter,
    )


def run_specs(crons: list[Cron]) -> list[RunSpec]:
    """The specs of the next ticks (`next_run_date`) of `crons`, their
    assistants read in one query (a batch's crons share a few). OwnerDenied
    when an owner may not run a tick (`run_specs_or_denied` sorts them out)."""
    specs, denied = run_specs_or_denied(crons)
    if denied:
        raise OwnerDenied(denied[0][1])
    return specs


def run_specs_or_denied(crons: list[Cron]) -> tuple[list[RunSpec], list[tuple[Cron, str]]]:
    """run_specs, and apart the crons whose owner may not run the tick, with the reason."""
    assistants = Assistant.objects.in_bulk({cron.assistant_id for cron in crons})
    for cron in crons:
        cron.assistant = assistants[cron.assistant_id]
    specs: list[RunSpec] = []
    denied: list[tuple[Cron, str]] = []
    for cron in crons:
        if cron.next_run_date is None:  # due crons have one (the claim's filter)
            raise ValueError(f"cron {cron.cron_id} has no next fire time")
        try:
            specs.append(run_spec(cron, cron.next_run_date))
        except OwnerDenied as exc:
            denied.append((cron, exc.reason))
    return specs, denied


def batchable(cron: Cron) -> bool:
    """Whether a tick of `cron` needs no decision when its run is written, so a
    batch may write it, ahead of its instant too: a stateless cron (a new
    thread each tick), or a thread cron that enqueues — in either case without
    an overlap policy to apply (`allow_all`), without a run budget
    (`max_runs`) to count down and without `max_consecutive_failures` (a cron
    that may pause itself when a run ends has nothing prepared ahead to
    withdraw then; a `retry_policy` is applied when a run fails, wherever it
    was written). Agrees with BATCHABLE."""
    if (
        cron.overlap_policy != Cron.OverlapPolicy.ALLOW_ALL
        or cron.max_runs is not None
        or cron.max_consecutive_failures is not None
    ):
        return False
    return cron.thread_id is None or _strategy(cron.payload or {}) == Run.MultitaskStrategy.ENQUEUE


# `batchable` as a query, for reading crons that may be prepared ahead.
BATCHABLE = Q(
    overlap_policy=Cron.OverlapPolicy.ALLOW_ALL,
    max_runs__isnull=True,
    max_consecutive_failures__isnull=True,
) & (
    Q(thread__isnull=True)
    | Q(payload__multitask_strategy__isnull=True)
    | Q(payload__multitask_strategy=Run.MultitaskStrategy.ENQUEUE)
)


# --------------------------------------------------------------- one tick


def record_tick(
    cron: Cron,
    instant: datetime,
    status: str,
    reason: str = "",
    run_id: uuid.UUID | None = None,
    *,
    kind: str = Tick.Kind.SCHEDULED,
    fire_at: datetime | None = None,
) -> Tick | None:
    """Record a tick in a savepoint; None when it is recorded already."""
    try:
        with transaction.atomic():
            tick = Tick.objects.create(
                cron=cron,
                scheduled_at=instant,
                fire_at=fire_at or instant,
                kind=kind,
                status=status,
                reason=reason,
                run_id=run_id,
            )
            metrics.ticks_counted(status, kind)
            return tick
    except IntegrityError:
        return None


class _Overlap:
    """What an overlap policy decided for a tick: refuse it (`skip`, the
    reason), or fire it, after `after_run_id` ends (buffered) or once the
    `cancel` runs are cancelled."""

    def __init__(
        self,
        skip: str = "",
        after_run_id: uuid.UUID | None = None,
        cancel: tuple[Run, ...] = (),
        reason: str = "",
    ) -> None:
        self.skip, self.after_run_id, self.cancel, self.reason = skip, after_run_id, cancel, reason


def _overlap(cron: Cron, policy: str, now: datetime) -> _Overlap:
    """Apply a stateless cron's overlap policy (Temporal's). The runs it
    overlaps are the cron's runs running, or pending at or past their instant
    (a run prepared ahead for an instant to come is not one). Called with the
    cron's row locked, so two ticks of a cron decide one after the other."""
    earlier = list(
        # status IN (...) as the partial index run_cron_active says it.
        Run.objects.filter(cron_id=cron.pk, status__in=[Run.Status.PENDING, Run.Status.RUNNING])
        .filter(
            Q(status=Run.Status.RUNNING)
            # A run without an instant (a manual one) is due at once.
            | Q(status=Run.Status.PENDING, scheduled_at__isnull=True)
            | Q(status=Run.Status.PENDING, scheduled_at__lte=now)
        )
        .order_by("created_at", "run_id")
    )
    if not earlier:
        return _Overlap()
    latest = earlier[-1]
    if policy == Cron.OverlapPolicy.SKIP:
        return _Overlap(skip=f"overlap_policy skip: run {latest.run_id} is still {latest.status}")
    if policy == Cron.OverlapPolicy.CANCEL_OTHER:
        # A pending run ends when cancelled; a running one stops between graph
        # steps: the new run starts once it has (Temporal's CANCEL_OTHER).
        running = [r for r in earlier if r.status == Run.Status.RUNNING]
        ids = ", ".join(str(r.run_id) for r in earlier)
        return _Overlap(
            cancel=tuple(earlier),
            after_run_id=running[-1].run_id if running else None,
            reason=f"overlap_policy cancel_other: cancelled {ids}",
        )
    active = {r.run_id for r in earlier}
    waiting = [r for r in earlier if r.status == Run.Status.PENDING and r.after_run_id in active]
    if policy == Cron.OverlapPolicy.BUFFER_ONE and waiting:
        return _Overlap(
            skip=f"overlap_policy buffer_one: run {waiting[0].run_id} is already buffered"
        )
    # buffer_one with none buffered, buffer_all: after the newest (a chain).
    return _Overlap(
        after_run_id=latest.run_id,
        reason=f"overlap_policy {policy}: buffered until run {latest.run_id} ends",
    )


def _create_run(
    cron: Cron, spec: RunSpec, *, kind: str, after_run_id: uuid.UUID | None = None
) -> Run:
    """The run of a tick through run_create (which makes the overlap
    decisions). A manual tick's run has no `scheduled_at`: it is not the run
    of a scheduled instant (the key Run shares with Tick), and is due now. A
    backfill's runs are bounded by the backfill's own cap, not the pending cap."""
    fields = spec.run_fields()
    if kind == Tick.Kind.MANUAL:
        fields["scheduled_at"] = fields["not_before"] = None
    thread = (
        Thread.objects.create(metadata=dict(spec.thread_metadata))
        if spec.stateless or cron.thread is None
        else cron.thread
    )
    return run_create(
        thread=thread,
        assistant=cron.assistant,
        max_pending=(
            None if kind == Tick.Kind.BACKFILL else settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD
        ),
        after_run_id=after_run_id,
        **fields,
    )


def fire_tick(
    cron: Cron,
    instant: datetime,
    *,
    kind: str = Tick.Kind.SCHEDULED,
    fire_at: datetime | None = None,
    reason: str = "",
    now: datetime | None = None,
    overlap_policy: str | None = None,
    jitter: timedelta | None = None,
) -> Tick | None:
    """Record the tick of `cron` at `instant` and create its run through
    run_create (caller's transaction). Returns the tick: fired (with its
    run_id), skipped by a stateless cron's overlap policy (the cron's, or
    `overlap_policy` given for this tick), or rejected by the thread's
    multitask strategy or the pending cap (with the reason); None when the
    tick was recorded already (a redelivery, another beat, a run-now in the
    same second, a backfill). A manual tick (`kind`) is never recorded
    already: it is keyed apart from the instants. `now` (default: the
    database's clock) says which earlier runs are at or past their instant.
    `jitter`: how late after its instant the run may start (None: the cron's
    offset for a scheduled tick, `tick_jitter`; none for a manual or backfill
    tick); the tick's `fire_at` (unless given) is the instant plus it."""
    manual = kind == Tick.Kind.MANUAL
    if (
        not manual
        and Tick.objects.filter(cron=cron, scheduled_at=instant)
        .exclude(kind=Tick.Kind.MANUAL)
        .exists()
    ):
        return None
    if jitter is None:
        # Only the schedule's ticks are jittered: a trigger or a backfill is due at once.
        jitter = tick_jitter(cron, instant) if kind == Tick.Kind.SCHEDULED else NO_JITTER
    fire_at = fire_at or instant + jitter
    try:
        spec = run_spec(cron, instant, jitter=jitter)
    except OwnerDenied as exc:
        return record_tick(
            cron, instant, Tick.Status.REJECTED, exc.reason, kind=kind, fire_at=fire_at
        )
    decision = _decide(cron, spec, overlap_policy or cron.overlap_policy, now)
    if decision.skip:
        return record_tick(
            cron, instant, Tick.Status.SKIPPED, decision.skip[:255], kind=kind, fire_at=fire_at
        )
    try:
        with transaction.atomic():
            # In the tick's savepoint: a tick recorded meanwhile undoes the cancels too.
            _cancel(decision)
            run = _create_run(cron, spec, kind=kind, after_run_id=decision.after_run_id)
            tick = Tick.objects.create(
                cron=cron,
                scheduled_at=instant,
                fire_at=fire_at,
                kind=kind,
                status=Tick.Status.FIRED,
                reason="; ".join(r for r in (reason, decision.reason) if r)[:255],
                run_id=run.run_id,
            )
            metrics.ticks_counted(Tick.Status.FIRED, kind)
            return tick
    except (ThreadBusy, TooManyPending) as exc:
        return record_tick(
            cron, instant, Tick.Status.REJECTED, str(exc)[:255], kind=kind, fire_at=fire_at
        )
    except IntegrityError:
        return None  # the tick exists: someone else fired it


def _decide(cron: Cron, spec: RunSpec, policy: str, now: datetime | None) -> _Overlap:
    """The overlap decision for a tick of `cron` under `policy`: none for a
    thread cron (its multitask_strategy decides) or allow_all; otherwise
    taken under the cron's row lock (beat holds it already), which orders
    its ticks' decisions."""
    if not spec.stateless or policy == Cron.OverlapPolicy.ALLOW_ALL:
        return _Overlap()
    list(Cron.objects.select_for_update().filter(pk=cron.pk).values_list("pk"))
    return _overlap(cron, policy, now or db_now())


def _cancel(decision: _Overlap) -> None:
    """Cancel the runs a cancel_other decision names (caller's savepoint)."""
    for other in decision.cancel:
        try:
            run_cancel(run=other, action=Run.MultitaskStrategy.INTERRUPT)
        except Run.DoesNotExist:
            continue  # deleted meanwhile (with its thread)


class _FiredMeanwhile(Exception):
    pass


# What a backfill may fire again: instants recorded without a run.
NOT_FIRED = (Tick.Status.SKIPPED, Tick.Status.REJECTED)


def refire_tick(
    cron: Cron,
    tick: Tick,
    *,
    reason: str = "backfilled",
    overlap_policy: str = Cron.OverlapPolicy.ALLOW_ALL,
) -> Tick | None:
    """Fire the instant of `tick`, recorded skipped or rejected, as a backfill
    (caller's transaction): its run is created and the tick becomes `fired`
    (kind `backfill`) by a conditional update, so of two backfills only one
    fires it. `overlap_policy` decides against the cron's earlier runs as for
    any tick (a skip leaves it skipped, with the new reason). Returns the
    tick as it is now (fired, or rejected or skipped again with the reason);
    None when it was fired meanwhile."""
    unfired = Tick.objects.filter(pk=tick.pk, status__in=NOT_FIRED)
    try:
        spec = run_spec(cron, tick.scheduled_at, jitter=NO_JITTER)
    except OwnerDenied as exc:
        fields: dict[str, Any] = {
            "status": Tick.Status.REJECTED,
            "reason": exc.reason,
            "kind": Tick.Kind.BACKFILL,
        }
        if not unfired.update(**fields):
            return None
        return _updated(tick, fields)
    decision = _decide(cron, spec, overlap_policy, None)
    if decision.skip:
        fields = {"status": Tick.Status.SKIPPED, "reason": decision.skip[:255]}
        if not unfired.update(**fields, kind=Tick.Kind.BACKFILL):
            return None
        return _updated(tick, {**fields, "kind": Tick.Kind.BACKFILL})
    try:
        with transaction.atomic():
            _cancel(decision)
            run = _create_run(
                cron, spec, kind=Tick.Kind.BACKFILL, after_run_id=decision.after_run_id
            )
            fields = {
                "status": Tick.Status.FIRED,
                "reason": "; ".join(r for r in (reason, decision.reason) if r)[:255],
                "kind": Tick.Kind.BACKFILL,
                "run_id": run.run_id,
                "fire_at": tick.scheduled_at,
            }
            if not unfired.update(**fields):
                raise _FiredMeanwhile  # undoes the run (and its thread)
            return _updated(tick, fields)
    except (ThreadBusy, TooManyPending) as exc:
        fields = {
            "status": Tick.Status.REJECTED,
            "reason": str(exc)[:255],
            "kind": Tick.Kind.BACKFILL,
        }
        if not unfired.update(**fields):
            return None
        return _updated(tick, fields)
    except (_FiredMeanwhile, IntegrityError):
        return None


def _updated(tick: Tick, fields: dict[str, Any]) -> Tick:
    """`tick` as its conditional update (refire_tick) left it; counted as such."""
    metrics.ticks_counted(fields["status"], fields["kind"])
    for name, value in fields.items():
        setattr(tick, name, value)
    return tick


@transaction.atomic
def cron_run_now(*, cron: Cron, now: datetime | None = None) -> Run | None:
    """Fire a cron immediately through the tick path (the admin's "run now"),
    as its tick at `now` (default: this second), without the cron's jitter."""
    instant = (now or djtz.now()).replace(microsecond=0)
    tick = fire_tick(
        Cron.objects.select_related("assistant", "thread").get(pk=cron.pk),
        instant,
        jitter=NO_JITTER,
    )
    if tick is None or tick.run_id is None:
        return None
    return Run.objects.filter(pk=tick.run_id).first()


# -------------------------------------------------------------- a batch


def fire_batch(specs: list[RunSpec]) -> list[uuid.UUID]:
    """Write the ticks, pending runs and new threads of `specs` at once
    (caller's transaction), stamping the existing threads. Returns the new
    run ids. Raises IntegrityError when any of those ticks exists already.
    Only for batchable crons, at most one spec per existing thread."""
    if connection.vendor == "postgresql":
        run_ids = fire_batch_postgres(specs)
    else:
        run_ids = fire_batch_orm(specs)
    metrics.ticks_counted(Tick.Status.FIRED, Tick.Kind.SCHEDULED, len(run_ids))
    return run_ids


def fire_batch_orm(specs: list[RunSpec]) -> list[uuid.UUID]:
    """fire_batch with bulk ORM inserts (backends other than PostgreSQL)."""
    threads, runs, ticks, stamps = [], [], [], {}
    for spec in specs:
        thread_id: uuid.UUID | None = spec.thread_id
        if thread_id is None:  # stateless: a new thread per fire
            thread = Thread(
                metadata=dict(spec.thread_metadata),
                graph_id=spec.graph_id,
                status=Thread.Status.BUSY,
            )
            threads.append(thread)
            thread_id = thread.thread_id
        else:
            stamps[thread_id] = spec
        run = Run(thread_id=thread_id, assistant_id=spec.assistant_id, **spec.run_fields())
        runs.append(run)
        ticks.append(
            Tick(
                cron_id=spec.cron_id,
                scheduled_at=spec.scheduled_at,
                fire_at=spec.not_before,
                status=Tick.Status.FIRED,
                run_id=run.run_id,
            )
        )
    Thread.objects.bulk_create(threads, batch_size=1000)
    Tick.objects.bulk_create(ticks, batch_size=1000)
    Run.objects.bulk_create(runs, batch_size=1000)
    for thread in Thread.objects.filter(pk__in=list(stamps)):
        spec = stamps[thread.thread_id]
        thread.metadata = {**thread.metadata, **spec.thread_metadata}
        thread.graph_id = spec.graph_id
        thread.status = Thread.Status.BUSY
        thread.save(update_fields=["metadata", "graph_id", "status", "updated_at"])
    return [r.run_id for r in runs]


def fire_batch_postgres(specs: list[RunSpec]) -> list[uuid.UUID]:
    """fire_batch in one statement (crons/sql/fire_batch.sql)."""
    rows = [
        {
            "cron_id": str(s.cron_id),
            "scheduled_at": s.scheduled_at.isoformat(),
            "assistant_id": str(s.assistant_id),
            "graph_id": s.graph_id,
            "thread_id": str(s.thread_id) if s.thread_id else None,
            "thread_metadata": s.thread_metadata,
            "kwargs": s.kwargs,
            "metadata": s.metadata,
            "multitask_strategy": s.multitask_strategy,
            "on_completion": s.on_completion,
            "not_before": s.not_before.isoformat() if s.jitter else None,
        }
        for s in specs
    ]
    with connection.cursor() as cursor:
        cursor.execute(_fire_batch_sql(), {"specs": json.dumps(rows, separators=(",", ":"))})
        return [row[0] for row in cursor.fetchall()]


@cache
def _fire_batch_sql() -> str:
    """The statement, with every Run column it does not name given its model
    default (or NULL), so it stays valid when fields are added to Run."""
    tables = {"crons_tick": Tick, "runs_run": Run, "threads_thread": Thread}
    for table, model in tables.items():
        if model._meta.db_table != table:
            raise TypeError(f"{model.__name__} is not in {table}: update crons/sql/fire_batch.sql")
    sql = (SQL_DIR / "fire_batch.sql").read_text()
    named = set(_insert_columns(sql, "runs_run"))
    names, values = [], []
    for f in Run._meta.concrete_fields:
        if f.column in named:
            continue
        if f.has_default() and not callable(f.default):
            value = f.get_db_prep_save(f.default, connection)
            values.append("NULL" if value is None else _literal(value))
        elif f.null:
            values.append("NULL")
        else:
            raise TypeError(f"Run.{f.name} needs a value in crons/sql/fire_batch.sql")
        names.append(connection.ops.quote_name(f.column or f.name))
    return sql.replace("/*OTHER_RUN_COLUMNS*/", "".join(f", {n}" for n in names)).replace(
        "/*OTHER_RUN_VALUES*/", "".join(f", {v}" for v in values)
    )


def _insert_columns(sql: str, table: str) -> list[str]:
    """The column list of the statement's INSERT INTO `table` (...)."""
    start = sql.index("(", sql.index(f"INSERT INTO {table}")) + 1
    columns = sql[start : sql.index(")", start)].split("/*")[0]
    return [c.strip().strip('"') for c in columns.split(",") if c.strip()]


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# ----------------------------------------------------- prepared ahead


def withdraw_prepared(cron: Cron, *, now: datetime | None = None) -> int:
    """Remove the ticks and runs prepared ahead for `cron` whose instant has not
    come (caller's transaction): a rescheduled, disabled, ended or deleted cron
    does not fire them, and no tick of an instant to come stays recorded —
    fired, or rejected ahead of time. Returns how many runs were withdrawn."""
    at = now or db_now_sql()
    # Not yet due: its instant, or its jittered start (not_before), to come.
    runs = Run.objects.filter(
        Q(scheduled_at__gt=at) | Q(not_before__gt=at),
        cron=cron,
        status=Run.Status.PENDING,
        attempts=0,
    )
    rows = list(runs.values_list("run_id", "thread_id", "scheduled_at"))
    # Every tick that has still to fire (no worker claims a run before its
    # instant and its not_before, so each such run is among `rows` and goes too).
    withdrawn, _ = (
        Tick.objects.filter(Q(scheduled_at__gt=at) | Q(fire_at__gt=at), cron=cron)
        .exclude(kind=Tick.Kind.MANUAL)
        .delete()
    )
    metrics.ticks_withdrawn(withdrawn)
    if not rows:
        return 0
    runs.filter(pk__in=[r[0] for r in rows]).delete()
    if cron.thread_id is None:
        Thread.objects.filter(pk__in=[r[1] for r in rows]).delete()
    return len(rows)
