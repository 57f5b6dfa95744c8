"""Firing due crons: which ticks fire, when, and in which way.

`fire_due` claims the crons whose `next_run_date` has come (read through the
partial index `cron_due`, rows locked with SKIP LOCKED), and for each records
its tick and creates its run in one transaction, then advances
`next_run_date`. How a tick becomes a run is crons.dispatch's (the same spec
whether a batch or the per-cron path writes it); this module decides which
instants fire or are skipped, which crons a batch takes, and wakes workers.
Exactly once per (cron, instant) holds by construction:

- the row lock and the compare-and-set on `next_run_date` keep a second beat
  from claiming the same instant;
- the unique key on Tick (cron, scheduled_at) among ticks of instants
  (scheduled or backfilled; manual triggers are keyed apart), and on Run
  (cron, scheduled_at), refuse a second record of it whatever else goes wrong;
- every claim happens under the scheduler lease (holder + epoch, checked with
  a row lock in the same transaction: crons.lease), so a beat that lost its
  lease fires nothing (fencing).

A cron with `max_runs` counts each scheduled tick it fires (`_count_down`, in
the tick's transaction, under the claim's row lock) and disables itself at 0.

Missed ticks (beat or database down) are caught up within the cron's
catch-up window (`catchup_window` seconds, default CRONSVC_MISSED_TICK_GRACE;
Kubernetes' startingDeadlineSeconds, Temporal's catchupWindow):

- `catchup` "latest" (the default): when the latest due instant is within
  the window it fires once; every older instant is recorded as skipped;
- `catchup` "all": every due instant within the window fires, oldest first,
  each through the overlap policy (so `skip` skips those behind a run still
  going), at most MAX_CATCHUP_FIRED per cron and pass (the next pass, at once,
  goes on from there); the instants older than the window are recorded
  skipped with how late they were.

Skipped instants are recorded at most MAX_SKIPPED_RECORDED per cron and pass,
the newest ones.

A cron's `jitter` moves when each instant's run may start, not the instant:
crons.dispatch decides the offset; a run whose `not_before` is still to come
is reported in `prepared`, so beat wakes workers then.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone as djtz

from crons import dispatch, firetime, lease
from crons.mirror import mirror_sync
from crons.models import Cron, Tick
from cronsvc.dbclock import db_now
from runs.models import Run
from runs.wakeups import wake_fanout, wake_workers

log = logging.getLogger(__name__)

MAX_SKIPPED_RECORDED = 100
# The most missed instants one pass fires for a cron with catchup "all".
MAX_CATCHUP_FIRED = 100
BATCH = 2000


@dataclass
class FireReport:
    fired: int = 0
    skipped: int = 0
    rejected: int = 0
    run_ids: list = field(default_factory=list)
    # Runs created ahead of their instant: instant -> count, to wake at the instant.
    prepared: dict = field(default_factory=dict)


def catchup_window(cron: Cron) -> timedelta:
    """How late an instant of `cron` may still fire: its catchup_window, or
    CRONSVC_MISSED_TICK_GRACE when it has none."""
    seconds = cron.catchup_window
    if seconds is None:
        seconds = settings.CRONSVC_MISSED_TICK_GRACE
    return timedelta(seconds=seconds)


def _window_label(cron: Cron) -> str:
    """The window as a skipped tick's reason names it."""
    return "grace" if cron.catchup_window is None else "catchup_window"


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


@dataclass
class _Missed:
    """The due instants of a catchup "all" cron, oldest first: those older than
    its window (the newest MAX_SKIPPED_RECORDED of them), those within it (the
    first MAX_CATCHUP_FIRED), and the last one walked."""

    older: list[datetime]
    within: list[datetime]
    last: datetime


def _due_instants_all(cron: Cron, now: datetime, window: timedelta) -> _Missed:
    older: deque[datetime] = deque(maxlen=MAX_SKIPPED_RECORDED)
    within: list[datetime] = []
    instant = cron.next_run_date
    for _ in range(100_000):
        if now - instant > window:
            older.append(instant)
        else:
            within.append(instant)
            if len(within) == MAX_CATCHUP_FIRED:
                break
        nxt = firetime.next_fire(cron.schedule, cron.timezone, instant)
        if nxt > now or (cron.end_time is not None and nxt > cron.end_time):
            break
        instant = nxt
    return _Missed(list(older), within, instant)


def _missed_reason(cron: Cron, instant: datetime, now: datetime, window: timedelta) -> str:
    missed_by = int((now - instant).total_seconds())
    return f"missed by {missed_by} s ({_window_label(cron)} {int(window.total_seconds())} s)"


def _count(report: FireReport, tick: Tick | None) -> None:
    if tick is None:
        return  # recorded already
    if tick.status == Tick.Status.FIRED:
        report.fired += 1
        report.run_ids.append(tick.run_id)
    elif tick.status == Tick.Status.REJECTED:
        report.rejected += 1
    else:
        report.skipped += 1


def _fire(cron: Cron, instant: datetime, now: datetime, report: FireReport) -> None:
    """Fire one due instant of `cron` (the per-cron path) and count it."""
    tick = dispatch.fire_tick(cron, instant, now=now)
    _count(report, tick)
    if tick is None or tick.status != Tick.Status.FIRED:
        return
    if tick.fire_at is not None and tick.fire_at > now:
        # Jittered: workers are woken when its run may start.
        report.prepared[tick.fire_at] = report.prepared.get(tick.fire_at, 0) + 1
    _count_down(cron)


def _process(cron: Cron, now: datetime, report: FireReport) -> None:
    window = catchup_window(cron)
    if cron.catchup == Cron.Catchup.ALL:
        missed = _due_instants_all(cron, now, window)
        for instant in missed.older:
            reason = _missed_reason(cron, instant, now, window)
            _count(report, dispatch.record_tick(cron, instant, Tick.Status.SKIPPED, reason))
        last = missed.last
        for instant in missed.within:
            _fire(cron, instant, now, report)
            if not cron.enabled:  # max_runs reached: the rest does not fire
                last = instant
                break
    else:
        instants = _due_instants(cron, now)
        last = instants[-1]
        for instant in instants[:-1]:
            _count(
                report,
                dispatch.record_tick(
                    cron, instant, Tick.Status.SKIPPED, "missed: a later tick was due"
                ),
            )
        if now - last > window:
            reason = _missed_reason(cron, last, now, window)
            _count(report, dispatch.record_tick(cron, last, Tick.Status.SKIPPED, reason))
        else:
            _fire(cron, last, now, report)
    cron.next_run_date = firetime.next_run(
        cron.schedule, cron.timezone, last, end_time=cron.end_time
    )


def _count_down(cron: Cron) -> None:
    """One scheduled tick of `cron` fired: count it against its max_runs. At 0
    the cron disables itself, saying why (the ticks fired stay). In the tick's
    transaction, with the cron's row locked by the claim, so every fired tick
    is counted once; manual runs (run-now) do not come here."""
    if cron.remaining_runs is None:
        return
    cron.remaining_runs = max(cron.remaining_runs - 1, 0)
    if cron.remaining_runs:
        Cron.objects.filter(pk=cron.pk).update(remaining_runs=cron.remaining_runs)
        return
    cron.enabled = False
    cron.paused_reason = f"max_runs reached: {cron.max_runs} scheduled run(s) fired"
    Cron.objects.filter(pk=cron.pk).update(
        remaining_runs=0, enabled=False, paused_reason=cron.paused_reason, updated_at=djtz.now()
    )
    mirror_sync(cron)  # the mirror shows the cron disabled


def _fast(cron: Cron, now: datetime) -> bool:
    """Crons a batch can fire without per-cron work: exactly one instant due
    (late by less than the schedule's shortest period, and within the cron's
    catch-up window: so its `catchup` has nothing to choose) and no overlap
    decision needed."""
    late = now - cron.next_run_date
    if late >= firetime.min_period(cron.schedule) or late > catchup_window(cron):
        return False
    return dispatch.batchable(cron)


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
    specs, denied = dispatch.run_specs_or_denied(batch)
    for cron, reason in denied:  # their owner may not run the tick (custom auth)
        _count(report, dispatch.record_tick(cron, cron.next_run_date, Tick.Status.REJECTED, reason))
    if not specs:
        return slow
    try:
        with transaction.atomic():
            run_ids = dispatch.fire_batch(specs)
    except IntegrityError as exc:
        # Some tick exists already (a run-now in the same second, another
        # scheduler): take the careful path, which skips recorded ticks.
        log.warning("batch of %s crons fired one by one instead: %s", len(batch), exc)
        return slow + batch
    report.fired += len(run_ids)
    report.run_ids += run_ids
    due_now = sum(1 for spec in specs if spec.not_before <= now)
    for spec in specs:
        if spec.not_before > now:
            report.prepared[spec.not_before] = report.prepared.get(spec.not_before, 0) + 1
    if due_now:
        fanout = wake_fanout(due_now)
        transaction.on_commit(lambda: wake_workers(fanout))
    return slow


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
                .filter(Q(next_run_date__lte=now) | dispatch.BATCHABLE)
                .order_by("next_run_date")[:batch]
            )
            if not due:
                return report
            lease.check(holder, epoch, now)
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
        nxt = firetime.next_run(schedule, tz, last, end_time=end_time)
        updates.append((cron_id, last, nxt))
    with transaction.atomic():
        for cron_id, last, nxt in updates:
            Cron.objects.filter(pk=cron_id, needs_advance=True, last_tick_at=last).update(
                next_run_date=nxt, needs_advance=False
            )
    return len(updates)


def prepared_instants(*, since: datetime) -> dict:
    """Instants (at or after `since`) with cron runs still pending: what a beat
    taking over must wake workers for, since the beat that prepared them can't.
    A jittered run's instant is its not_before."""
    rows = (
        Run.objects.filter(
            status=Run.Status.PENDING, cron__isnull=False, scheduled_at__isnull=False
        )
        .annotate(due=Coalesce("not_before", "scheduled_at"))
        .filter(due__gte=since)
        .values("due")
        .annotate(n=Count("run_id"))
    )
    return {row["due"]: row["n"] for row in rows}


def next_due_at() -> datetime | None:
    return (
        Cron.objects.filter(enabled=True, next_run_date__isnull=False)
        .order_by("next_run_date")
        .values_list("next_run_date", flat=True)
        .first()
    )
