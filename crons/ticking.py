"""Firing due crons: the scheduler's write path.

`fire_due` claims the crons whose `next_run_date` has come (read through the
partial index `cron_due`, rows locked with SKIP LOCKED), and for each records
its tick and creates its run in one transaction, then advances
`next_run_date`. Exactly once per (cron, instant) holds by construction:

- the row lock and the compare-and-set on `next_run_date` keep a second beat
  from claiming the same instant;
- the unique key on Tick (cron, scheduled_at), and on Run (cron, scheduled_at),
  refuse a second record of it whatever else goes wrong;
- every claim happens under the scheduler lease (holder + epoch, checked with
  a row lock in the same transaction), so a beat that lost its lease fires
  nothing (fencing).

Missed ticks (beat or database down): when the latest due instant is within
CRONSVC_MISSED_TICK_GRACE seconds of now it fires once; every older instant
is recorded as skipped (at most MAX_SKIPPED_RECORDED per cron and pass, the
newest ones), like Kubernetes' startingDeadlineSeconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone as djtz

from crons import firetime
from crons.dispatch_sql import EXCLUDED, fire_batch_postgres
from crons.models import Cron, SchedulerLease, Tick
from crons.services import compute_next_run
from runs.models import Run
from runs.services import ThreadBusy, TooManyPending, run_create, wake_fanout, wake_workers
from threads.models import Thread

log = logging.getLogger(__name__)

LEASE_NAME = "beat"
MAX_SKIPPED_RECORDED = 100
BATCH = 2000


class LeaseLost(Exception):
    pass


@dataclass
class FireReport:
    fired: int = 0
    skipped: int = 0
    rejected: int = 0
    run_ids: list = field(default_factory=list)
    # Runs created ahead of their instant: instant -> count, to wake at the instant.
    prepared: dict = field(default_factory=dict)


def db_now() -> datetime:
    """The database's clock: every beat compares due times against the same one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
    return djtz.now()


def lease_acquire(*, holder: str, now: datetime, ttl: float | None = None) -> int | None:
    """Take or renew the scheduler lease; returns its epoch, or None when another holds it."""
    ttl = ttl if ttl is not None else settings.CRONSVC_BEAT_LEASE_SECONDS
    expires = now + timedelta(seconds=ttl)
    with transaction.atomic():
        SchedulerLease.objects.bulk_create(
            [SchedulerLease(name=LEASE_NAME, holder="", epoch=0, expires_at=now)],
            ignore_conflicts=True,
        )
        lease = SchedulerLease.objects.select_for_update().get(name=LEASE_NAME)
        if lease.holder == holder and lease.expires_at > now:
            lease.expires_at = expires
            lease.save(update_fields=["expires_at"])
            return lease.epoch
        if lease.expires_at <= now or not lease.holder:
            lease.holder, lease.epoch, lease.expires_at = holder, lease.epoch + 1, expires
            lease.save(update_fields=["holder", "epoch", "expires_at"])
            log.info("scheduler lease taken by %s (epoch %s)", holder, lease.epoch)
            return lease.epoch
        return None


def lease_release(*, holder: str) -> None:
    SchedulerLease.objects.filter(name=LEASE_NAME, holder=holder).update(holder="")


def _check_lease(holder: str | None, epoch: int | None, now: datetime) -> None:
    if holder is None:
        return
    held = (
        SchedulerLease.objects.select_for_update()
        .filter(name=LEASE_NAME, holder=holder, epoch=epoch, expires_at__gt=now)
        .exists()
    )
    if not held:
        raise LeaseLost(f"{holder} no longer holds the scheduler lease (epoch {epoch})")


def _due_instants(cron: Cron, now: datetime) -> list[datetime]:
    """Instants from cron.next_run_date up to now (bounded, newest last)."""
    instants = [cron.next_run_date]
    after = cron.next_run_date
    # Walk forward; keep only the newest MAX_SKIPPED_RECORDED + 1.
    for _ in range(100_000):
        nxt = firetime.next_fire(cron.schedule, cron.timezone, after)
        if nxt > now or (cron.end_time is not None and nxt > cron.end_time):
            break
        instants.append(nxt)
        after = nxt
        if len(instants) > MAX_SKIPPED_RECORDED + 1:
            instants.pop(0)
    return instants


def _record(cron: Cron, instant: datetime, status: str, reason: str = "", run_id=None) -> bool:
    try:
        with transaction.atomic():
            Tick.objects.create(
                cron=cron, scheduled_at=instant, status=status, reason=reason, run_id=run_id
            )
        return True
    except IntegrityError:
        return False


def fire_tick(cron: Cron, instant: datetime, report: FireReport) -> None:
    """Record one tick of `cron` at `instant` and create its run (caller's transaction)."""
    if Tick.objects.filter(cron=cron, scheduled_at=instant).exists():
        return  # already recorded: a redelivery or a second beat
    payload = cron.payload or {}
    strategy = payload.get("multitask_strategy") or Run.MultitaskStrategy.ENQUEUE
    kwargs = {k: v for k, v in payload.items() if k not in RUN_KWARGS_EXCLUDED}
    metadata = {**(payload.get("metadata") or {}), "cron_id": str(cron.cron_id)}
    try:
        with transaction.atomic():
            if cron.thread_id is None:
                thread = Thread.objects.create(metadata={"cron_id": str(cron.cron_id)})
                on_completion = cron.on_run_completed or "delete"
            else:
                thread = cron.thread
                on_completion = None
            run = run_create(
                thread=thread,
                assistant=cron.assistant,
                kwargs=kwargs,
                metadata=metadata,
                multitask_strategy=strategy,
                on_completion=on_completion,
                cron_id=cron.cron_id,
                scheduled_at=instant,
                max_pending=settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD,
            )
            Tick.objects.create(
                cron=cron, scheduled_at=instant, status=Tick.Status.FIRED, run_id=run.run_id
            )
        report.fired += 1
        report.run_ids.append(run.run_id)
    except (ThreadBusy, TooManyPending) as exc:
        if _record(cron, instant, Tick.Status.REJECTED, str(exc)[:255]):
            report.rejected += 1
    except IntegrityError:
        pass  # the tick exists: someone else fired it


def _process(cron: Cron, now: datetime, report: FireReport) -> None:
    grace = timedelta(seconds=settings.CRONSVC_MISSED_TICK_GRACE)
    instants = _due_instants(cron, now)
    latest = instants[-1]
    for instant in instants[:-1]:
        if _record(cron, instant, Tick.Status.SKIPPED, "missed: a later tick was due"):
            report.skipped += 1
    if now - latest > grace:
        if _record(
            cron,
            latest,
            Tick.Status.SKIPPED,
            f"missed by {int((now - latest).total_seconds())} s (grace {int(grace.total_seconds())} s)",
        ):
            report.skipped += 1
    else:
        fire_tick(cron, latest, report)
    cron.next_run_date = compute_next_run(
        schedule=cron.schedule, timezone=cron.timezone, end_time=cron.end_time, after=latest
    )


FAST_LATENESS = timedelta(seconds=1)
RUN_KWARGS_EXCLUDED = set(EXCLUDED)


def _min_period(schedule: str) -> timedelta:
    """A lower bound of the time between two fires: a minute for five-field
    expressions and aliases, a second with croniter's seconds field."""
    return FAST_LATENESS if len(schedule.split()) == 6 else timedelta(minutes=1)


def _fast(cron: Cron, now: datetime) -> bool:
    """Crons a batch can fire without per-cron work: exactly one instant due
    (late by less than the schedule's shortest period, and within the grace)
    and no overlap decision needed."""
    late = now - cron.next_run_date
    if late >= _min_period(cron.schedule) or late > timedelta(
        seconds=settings.CRONSVC_MISSED_TICK_GRACE
    ):
        return False
    strategy = (cron.payload or {}).get("multitask_strategy") or "enqueue"
    return cron.thread_id is None or strategy == "enqueue"


def _fire_batch(crons: list[Cron], report: FireReport, now: datetime) -> list[Cron]:
    """Record a tick and create a pending run for each cron, with set-based writes.

    Returns the crons that must go the per-cron way instead (a thread over its
    pending cap, or a tick already recorded)."""
    cap = settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD
    thread_ids = {c.thread_id for c in crons if c.thread_id}
    pending: dict = {}
    if thread_ids:
        for tid in Run.objects.filter(
            thread_id__in=thread_ids, status=Run.Status.PENDING
        ).values_list("thread_id", flat=True):
            pending[tid] = pending.get(tid, 0) + 1
    slow, batch = [], []
    for cron in crons:
        if cron.thread_id:
            if pending.get(cron.thread_id, 0) >= cap or cron.thread_id in {
                c.thread_id for c in batch
            }:
                slow.append(cron)  # over the cap, or a second cron of the thread in this batch
                continue
            pending[cron.thread_id] = pending.get(cron.thread_id, 0) + 1
        batch.append(cron)
    if not batch:
        return slow
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                run_ids = fire_batch_postgres([c.cron_id for c in batch])
            else:
                run_ids = _fire_batch_orm(batch)
    except IntegrityError as exc:
        # Some tick exists already (a run-now in the same second, another
        # scheduler): take the careful path, which skips recorded ticks.
        log.warning("batch of %s crons fired one by one instead: %s", len(batch), exc)
        return slow + batch
    report.fired += len(run_ids)
    report.run_ids += run_ids
    due_now = sum(1 for c in batch if c.next_run_date <= now)
    for cron in batch:
        if cron.next_run_date > now:
            report.prepared[cron.next_run_date] = report.prepared.get(cron.next_run_date, 0) + 1
    if due_now:
        fanout = wake_fanout(due_now)
        transaction.on_commit(lambda: wake_workers(fanout))
    return slow


def _fire_batch_orm(batch: list[Cron]) -> list:
    threads, runs, ticks, busy = [], [], [], {}
    for cron in batch:
        payload = cron.payload or {}
        if cron.thread_id:
            thread_id, on_completion = cron.thread_id, None
            busy[cron.thread_id] = cron.assistant.graph_id
        else:
            thread = Thread(
                metadata={
                    "cron_id": str(cron.cron_id),
                    "graph_id": cron.assistant.graph_id,
                    "assistant_id": str(cron.assistant_id),
                },
                graph_id=cron.assistant.graph_id,
                status=Thread.Status.BUSY,
            )
            threads.append(thread)
            thread_id, on_completion = thread.thread_id, cron.on_run_completed or "delete"
        run = Run(
            thread_id=thread_id,
            assistant_id=cron.assistant_id,
            kwargs={k: v for k, v in payload.items() if k not in RUN_KWARGS_EXCLUDED},
            metadata={**(payload.get("metadata") or {}), "cron_id": str(cron.cron_id)},
            multitask_strategy=Run.MultitaskStrategy.ENQUEUE,
            on_completion=on_completion,
            cron_id=cron.cron_id,
            scheduled_at=cron.next_run_date,
        )
        runs.append(run)
        ticks.append(
            Tick(
                cron=cron,
                scheduled_at=cron.next_run_date,
                status=Tick.Status.FIRED,
                run_id=run.run_id,
            )
        )
    Thread.objects.bulk_create(threads, batch_size=1000)
    Tick.objects.bulk_create(ticks, batch_size=1000)
    Run.objects.bulk_create(runs, batch_size=1000)
    for tid, graph_id in busy.items():
        Thread.objects.filter(pk=tid).update(status=Thread.Status.BUSY)
        Thread.objects.filter(pk=tid, graph_id__isnull=True).update(graph_id=graph_id)
    return [r.run_id for r in runs]


BATCHABLE = (
    Q(thread__isnull=True)
    | Q(payload__multitask_strategy__isnull=True)
    | Q(payload__multitask_strategy="enqueue")
)


def fire_due(
    *,
    now: datetime | None = None,
    holder: str | None = None,
    epoch: int | None = None,
    batch: int = BATCH,
    lookahead: float = 0,
) -> FireReport:
    """Fire every cron due at `now` (default: the database's clock).

    On-time crons are fired in set-based batches and their next fire time is
    left to `advance` (off the dispatch path); late ones, and thread crons
    whose overlap policy needs a decision, go one by one through `_process`.

    With `lookahead` seconds, batchable crons due within that window are
    prepared ahead: their tick and pending run are written now, with the
    instant as `scheduled_at`, which no worker claims before it comes; the
    caller wakes workers at the instant (report.prepared). So a second with
    10,000 due crons costs only the wake-up messages at that second."""
    now = now or db_now()
    horizon = now + timedelta(seconds=lookahead)
    report = FireReport()
    while True:
        with transaction.atomic():
            due = list(
                Cron.objects.select_for_update(skip_locked=True, of=("self",))
                # The range on its own keeps this an index range scan on cron_due.
                .filter(enabled=True, next_run_date__isnull=False, next_run_date__lte=horizon)
                .filter(Q(next_run_date__lte=now) | BATCHABLE)
                .order_by("next_run_date")[:batch]
            )
            if not due:
                return report
            _check_lease(holder, epoch, now)
            fast = [c for c in due if _fast(c, now)]
            slow = [c for c in due if not _fast(c, now)] + _fire_batch(fast, report, now)
            fired_fast = [c for c in fast if c not in slow]
            if fired_fast:
                Cron.objects.filter(pk__in=[c.pk for c in fired_fast]).update(
                    last_tick_at=F("next_run_date"), next_run_date=None, needs_advance=True
                )
            for cron in slow:
                claimed_instant = cron.next_run_date
                _process(cron, now, report)
                # Compare-and-set: only advance from the instant we claimed.
                Cron.objects.filter(pk=cron.pk, next_run_date=claimed_instant).update(
                    next_run_date=cron.next_run_date,
                    last_tick_at=claimed_instant,
                    needs_advance=False,
                )
        if len(due) < batch:
            return report


def advance(*, limit: int = 2000) -> int:
    """Compute the next fire time of crons a batch fired (needs_advance).

    Safe beside edits: the update only applies while the row still waits for
    this advance from the same instant (compare-and-set on last_tick_at)."""
    rows = list(
        Cron.objects.filter(needs_advance=True)
        .order_by("last_tick_at")
        .values_list("cron_id", "schedule", "timezone", "end_time", "last_tick_at")[:limit]
    )
    updates = []
    for cron_id, schedule, tz, end_time, last in rows:
        nxt = compute_next_run(schedule=schedule, timezone=tz, end_time=end_time, after=last)
        updates.append((cron_id, last, nxt))
    with transaction.atomic():
        for cron_id, last, nxt in updates:
            Cron.objects.filter(pk=cron_id, needs_advance=True, last_tick_at=last).update(
                next_run_date=nxt, needs_advance=False
            )
    return len(updates)


def withdraw_prepared(cron: Cron, *, now: datetime | None = None) -> int:
    """Remove the ticks and runs prepared ahead for `cron` whose instant has not
    come (caller's transaction): a rescheduled, disabled or deleted cron does
    not fire them. Returns how many runs were withdrawn."""
    now = now or db_now()
    runs = Run.objects.filter(
        cron=cron, status=Run.Status.PENDING, scheduled_at__gt=now, attempts=0
    )
    rows = list(runs.values_list("run_id", "thread_id", "scheduled_at"))
    if not rows:
        return 0
    Tick.objects.filter(cron=cron, scheduled_at__in=[r[2] for r in rows]).delete()
    runs.filter(pk__in=[r[0] for r in rows]).delete()
    if cron.thread_id is None:
        Thread.objects.filter(pk__in=[r[1] for r in rows]).delete()
    return len(rows)


def prepared_instants(*, since: datetime) -> dict:
    """Instants (at or after `since`) with cron runs still pending: what a beat
    taking over must wake workers for, since the beat that prepared them can't."""
    from django.db.models import Count

    rows = (
        Run.objects.filter(status=Run.Status.PENDING, cron__isnull=False, scheduled_at__gte=since)
        .values("scheduled_at")
        .annotate(n=Count("run_id"))
    )
    return {row["scheduled_at"]: row["n"] for row in rows}


def next_due_at() -> datetime | None:
    return (
        Cron.objects.filter(enabled=True, next_run_date__isnull=False)
        .order_by("next_run_date")
        .values_list("next_run_date", flat=True)
        .first()
    )


@transaction.atomic
def cron_run_now(*, cron: Cron, now: datetime | None = None) -> Run | None:
    """Fire a cron immediately through the tick path (the admin's "run now")."""
    report = FireReport()
    instant = (now or djtz.now()).replace(microsecond=0)
    fire_tick(Cron.objects.select_related("assistant", "thread").get(pk=cron.pk), instant, report)
    return Run.objects.filter(pk=report.run_ids[0]).first() if report.run_ids else None
