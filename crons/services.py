"""Writes of crons. Each keeps the cron's django-celery-beat mirror in step, in
the same transaction (crons.mirror), and sets `next_run_date` from the one
fire-time module (crons.firetime) the scheduler uses."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone as djtz
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from crons import dispatch, firetime
from crons.dispatch import withdraw_prepared
from crons.mirror import mirror_delete, mirror_sync, mirrors_bulk_create, mirrors_copy
from crons.models import Cron, Tick
from crons.retry import InvalidPolicy, max_consecutive_failures_valid, retry_policy_normalized
from crons.selectors import cron_thread_visible
from cronsvc import custom_auth, metrics
from cronsvc.dbclock import db_now
from cronsvc.errors import AssistantNotFound, CronNotFound, Invalid, ThreadNotFound
from cronsvc.models import Assistant
from cronsvc.pg_copy import (
    NULL,
    copy_field,
    copy_lines,
    copy_text,
    lock_keys,
    replica_copy_allowed,
    replica_role,
)
from runs.models import Run
from runs.webhooks.guard import url_problem
from threads.models import Thread

NOT_SET: Any = object()

# What a stateless cron does with each run's thread unless told otherwise.
# Decided here, when the cron is written, and stored: the tick path reads the
# stored value. Thread crons store None (the thread is the cron's).
STATELESS_ON_RUN_COMPLETED = Cron.OnRunCompleted.DELETE


def validate_schedule(schedule: str, timezone: str | None) -> None:
    try:
        firetime.validate(schedule, timezone)
    except (firetime.InvalidSchedule, firetime.InvalidTimezone) as exc:
        raise Invalid(str(exc)) from exc


THREAD_OVERLAP = (
    "overlap_policy applies to stateless crons only: a cron on a thread uses "
    "multitask_strategy (reject ~ skip, enqueue ~ buffer_all, interrupt or rollback ~ "
    "cancel_other)"
)


def first_run(
    schedule: str,
    timezone: str | None,
    now: datetime,
    *,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> datetime | None:
    """A cron's next_run_date from `now`: the first instant after now, and not
    before start_time (an instant at start_time fires); None when end_time
    comes first."""
    if start_time is None or start_time <= now:
        return firetime.next_run(schedule, timezone, now, end_time=end_time)
    try:
        nxt = firetime.next_fire(schedule, timezone, start_time - timedelta(seconds=1))
        while nxt < start_time:  # start_time within a second
            nxt = firetime.next_fire(schedule, timezone, nxt)
    except (firetime.InvalidSchedule, OverflowError) as exc:  # near datetime.max
        raise Invalid(f"no fire time at or after start_time {start_time.isoformat()}") from exc
    return None if end_time is not None and nxt > end_time else nxt


def _max_runs_valid(max_runs: int | None) -> None:
    if max_runs is not None and (isinstance(max_runs, bool) or max_runs < 1):
        raise Invalid(f"max_runs must be a positive integer or null, not {max_runs!r}")


# The largest number of seconds a cron stores (its columns' range).
MAX_SECONDS = 2**31 - 1


def _seconds_valid(name: str, value: object) -> None:
    """catchup_window and jitter: a whole number of seconds, >= 0, or null."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise Invalid(
            f"{name} must be a non-negative integer of seconds (at most {MAX_SECONDS}) or null, "
            f"not {value!r}"
        )


def _catchup_valid(catchup: object) -> None:
    if catchup is not None and catchup not in Cron.Catchup.values:
        choices = ", ".join(repr(c) for c in Cron.Catchup.values)
        raise Invalid(f"catchup must be one of {choices}, not {catchup!r}")


def _failure_policies(retry_policy: Any, max_consecutive_failures: Any) -> dict[str, Any] | None:
    """The retry_policy to store (defaults filled in; None: no retry), after
    both are validated (crons.retry): Invalid otherwise."""
    try:
        max_consecutive_failures_valid(max_consecutive_failures)
        return retry_policy_normalized(retry_policy)
    except InvalidPolicy as exc:
        raise Invalid(str(exc)) from exc


def _on_run_completed(thread: Thread | None, value: str | None) -> str | None:
    """The stored on_run_completed: None on a thread cron, the stateless
    default when not given."""
    if thread is not None:
        return None
    return value or STATELESS_ON_RUN_COMPLETED


def webhook_require_valid(payload: dict | None) -> None:
    """422 for a run payload whose `webhook` can never be delivered
    (runs.webhooks.guard.url_problem), before anything is written."""
    url = (payload or {}).get("webhook")
    problem = url_problem(url) if url is not None else None
    if problem:
        raise Invalid(problem)


def _create_filter_require(
    filter_: dict[str, Any], *, thread: Thread | None, assistant: Assistant
) -> None:
    """A filter returned by crons.create, applied as the LangGraph Server
    applies it: to what the cron is created on. A thread cron's thread, and an
    assistant other than the default ones made from langgraph.json, must match
    it; otherwise the cron is not created and the answer is a 404 (the
    server's "Thread not found or not authorized"). The cron's own metadata is
    what the handler left in value["metadata"]; it is not checked, as there."""
    if (
        thread is not None
        and not Thread.objects.filter(pk=thread.pk).filter(custom_auth.filter_q(filter_)).exists()
    ):
        raise ThreadNotFound(f"Thread with ID {thread.pk} not found or not authorized")
    if (
        not Assistant.objects.filter(pk=assistant.pk)
        .filter(custom_auth.assistant_read_q(filter_))
        .exists()
    ):
        raise AssistantNotFound(f"Assistant '{assistant.pk}' not found or not authorized")


@transaction.atomic
def cron_create(
    *,
    assistant: Assistant,
    schedule: str,
    thread: Thread | None = None,
    timezone: str | None = None,
    payload: dict | None = None,
    metadata: dict | None = None,
    end_time: datetime | None = None,
    enabled: bool = True,
    on_run_completed: str | None = None,
    user_id: str | None = None,
    overlap_policy: str | None = None,
    start_time: datetime | None = None,
    max_runs: int | None = None,
    catchup_window: int | None = None,
    catchup: str | None = None,
    jitter: int | None = None,
    retry_policy: dict[str, Any] | None = None,
    max_consecutive_failures: int | None = None,
    now: datetime | None = None,
) -> Cron:
    """Create a cron. With custom auth, as crons.create allows: the cron's
    owner is the current user (`user_id` its identity, `owner` the user, which
    its ticks run as), and its metadata what the handler leaves in
    value["metadata"] (the payload's own metadata stays the runs').

    Scheduler control (None: the LangGraph behaviour): `overlap_policy`
    (stateless crons only), `start_time` (no instant before it fires),
    `max_runs` (scheduled ticks that may fire; `remaining_runs` counts down),
    `catchup_window` (seconds a missed instant may still fire; None:
    CRONSVC_MISSED_TICK_GRACE), `catchup` (which missed instants within it
    fire: "latest", the default, or "all"), `jitter` (seconds each instant's
    run may start late; None or 0: none) (crons.ticking, crons.dispatch);
    failure policies (crons.retry): `retry_policy` (a failed run attempted
    again), `max_consecutive_failures` (the cron pauses after that many
    failed runs in a row)."""
    user = custom_auth.current_user()
    value = {
        "payload": payload or {},
        "schedule": schedule,
        "cron_id": None,
        "thread_id": thread.pk if thread is not None else None,
        "user_id": user.identity if user is not None else user_id,
        "end_time": end_time,
        "metadata": dict(metadata or {}),
    }
    filter_ = custom_auth.authorize("crons", "create", value)
    # What the handler left is what is stored: the payload (the runs' kwargs and
    # metadata) and the cron's own metadata, changed in place or replaced.
    payload = value.get("payload") or {}
    metadata = value.get("metadata")
    if filter_:
        _create_filter_require(filter_, thread=thread, assistant=assistant)
    if user is not None:
        user_id = user.identity
    validate_schedule(schedule, timezone)
    webhook_require_valid(payload)
    if thread is not None and overlap_policy is not None:
        raise Invalid(THREAD_OVERLAP)
    _max_runs_valid(max_runs)
    _seconds_valid("catchup_window", catchup_window)
    _seconds_valid("jitter", jitter)
    _catchup_valid(catchup)
    retry_policy = _failure_policies(retry_policy, max_consecutive_failures)
    now = now or djtz.now()
    if enabled and end_time is not None and end_time <= now:
        # It would be an enabled cron that never fires. (A PATCH may set a past
        # end_time: that ends a cron and withdraws what was prepared for it.)
        raise Invalid(
            f"end_time {end_time.isoformat()} has already passed: the cron would never fire"
        )
    if enabled and start_time is not None and end_time is not None and start_time > end_time:
        raise Invalid(
            f"start_time {start_time.isoformat()} is after end_time {end_time.isoformat()}: "
            "the cron would never fire"
        )
    cron = Cron(
        assistant=assistant,
        thread=thread,
        schedule=schedule,
        timezone=timezone or None,
        payload=payload,
        metadata=metadata or {},
        end_time=end_time,
        enabled=enabled,
        on_run_completed=_on_run_completed(thread, on_run_completed),
        user_id=user_id,
        owner=user.to_dict() if user is not None else None,
        overlap_policy=overlap_policy or Cron.OverlapPolicy.ALLOW_ALL,
        start_time=start_time,
        max_runs=max_runs,
        remaining_runs=max_runs,
        catchup_window=catchup_window,
        catchup=catchup or Cron.Catchup.LATEST,
        jitter=jitter,
        retry_policy=retry_policy,
        max_consecutive_failures=max_consecutive_failures,
        next_run_date=first_run(schedule, timezone, now, start_time=start_time, end_time=end_time),
    )
    mirror_sync(cron)  # the mirror first: the cron's row is inserted with its link
    cron.save(force_insert=True)
    return cron


@transaction.atomic
def cron_update(
    *,
    cron: Cron | uuid.UUID,
    schedule: str | None = None,
    timezone: str | None = None,
    end_time: datetime | None = NOT_SET,
    enabled: bool | None = None,
    on_run_completed: str | None = None,
    payload: dict | None = None,
    metadata: dict | None = None,
    overlap_policy: str | None = None,
    start_time: datetime | None = NOT_SET,
    max_runs: int | None = NOT_SET,
    catchup_window: int | None = NOT_SET,
    catchup: str | None = None,
    jitter: int | None = NOT_SET,
    retry_policy: dict[str, Any] | None = NOT_SET,
    max_consecutive_failures: int | None = NOT_SET,
    now: datetime | None = None,
) -> Cron:
    """Change a cron; a new schedule, timezone, end_time, start_time,
    overlap_policy, max_runs, jitter or re-enabling takes effect from now (the
    next tick is recomputed, runs prepared ahead or waiting for their
    jittered start are withdrawn). `catchup_window` and `jitter` (None:
    cleared) and `catchup` (None: left) are validated as cron_create does. `on_run_completed`
    only applies to a stateless cron: None leaves it, "" sets the default.

    `max_runs` (a number, or None for no limit) starts a new count:
    `remaining_runs` becomes it. A cron that disabled itself with no run left
    is re-enabled only with a new `max_runs` in the same call (Invalid
    otherwise, and nothing is written); re-enabling clears `paused_reason`
    and `consecutive_failures`. `retry_policy` (None: no retry) and
    `max_consecutive_failures` (None: never pause) replace the cron's; a new
    retry_policy applies to the next failure of any of its runs.

    `cron` is the cron or its id: it is read here, locked (CronNotFound when it
    is not there, or custom auth hides it)."""
    # Custom auth: crons.update decides (a cron its filter hides, or on a thread
    # the caller may not read, is not found), and the payload and metadata its
    # handler leaves (changed in place or replaced) are what is merged in.
    value = {
        "cron_id": cron.pk if isinstance(cron, Cron) else cron,
        "payload": payload,
        "schedule": schedule,
        "metadata": dict(metadata or {}),
    }
    allowed = custom_auth.filter_q(custom_auth.authorize("crons", "update", value))
    payload = value.get("payload")
    metadata = value.get("metadata")
    webhook_require_valid(payload)
    found = (
        Cron.objects.select_for_update(of=("self",))
        .select_related("periodic_task")
        .filter(allowed)
        .filter(pk=value["cron_id"])
        .first()
    )
    if found is None or not cron_thread_visible(found):
        raise CronNotFound(f"Cron '{value['cron_id']}' not found")
    cron = found
    if overlap_policy is not None and cron.thread_id is not None:
        raise Invalid(THREAD_OVERLAP)
    if catchup_window is not NOT_SET:
        _seconds_valid("catchup_window", catchup_window)
    if jitter is not NOT_SET:
        _seconds_valid("jitter", jitter)
    _catchup_valid(catchup)
    if retry_policy is not NOT_SET or max_consecutive_failures is not NOT_SET:
        policy = _failure_policies(
            None if retry_policy is NOT_SET else retry_policy,
            None if max_consecutive_failures is NOT_SET else max_consecutive_failures,
        )
        if retry_policy is not NOT_SET:
            cron.retry_policy = policy
    if max_runs is not NOT_SET:
        _max_runs_valid(max_runs)
    elif enabled and cron.remaining_runs == 0:
        raise Invalid(
            f"cron {cron.cron_id} has fired all its max_runs ({cron.max_runs}): send a new "
            "max_runs (or null for no limit) with enabled: true to enable it again"
        )
    reschedule = False
    if schedule is not None and schedule != cron.schedule:
        cron.schedule, reschedule = schedule, True
    if timezone is not None and (timezone or None) != cron.timezone:
        cron.timezone, reschedule = timezone or None, True
    if end_time is not NOT_SET and end_time != cron.end_time:
        cron.end_time, reschedule = end_time, True
    if start_time is not NOT_SET and start_time != cron.start_time:
        cron.start_time, reschedule = start_time, True
    if overlap_policy is not None and overlap_policy != cron.overlap_policy:
        # The cron may leave (or join) the batch path: what it prepared goes.
        cron.overlap_policy, reschedule = overlap_policy, True
    if catchup_window is not NOT_SET:
        cron.catchup_window = catchup_window  # read at the next late tick
    if catchup is not None:
        cron.catchup = catchup
    if jitter is not NOT_SET and jitter != cron.jitter:
        # Runs prepared (or waiting) with the old offsets go.
        cron.jitter, reschedule = jitter, True
    if max_runs is not NOT_SET:
        # A new count; runs prepared ahead (not counted) go.
        reschedule = reschedule or max_runs != cron.max_runs
        cron.max_runs = cron.remaining_runs = max_runs
    if (
        max_consecutive_failures is not NOT_SET
        and max_consecutive_failures != cron.max_consecutive_failures
    ):
        # The cron may leave (or join) the batch path: what it prepared goes.
        cron.max_consecutive_failures, reschedule = max_consecutive_failures, True
    enabled_changed = enabled is not None and enabled != cron.enabled
    if enabled_changed:
        cron.enabled = bool(enabled)
        reschedule = reschedule or cron.enabled
        if cron.enabled:
            cron.paused_reason = None
            cron.consecutive_failures = 0
    if on_run_completed is not None and cron.thread_id is None:
        cron.on_run_completed = _on_run_completed(None, on_run_completed)
    if payload:
        cron.payload = {**cron.payload, **payload}
    if metadata is not None:
        cron.metadata = {**cron.metadata, **metadata}
    validate_schedule(cron.schedule, cron.timezone)
    if reschedule or not cron.enabled:
        withdraw_prepared(cron, now=now)
    if reschedule:
        cron.needs_advance = False
        cron.next_run_date = first_run(
            cron.schedule,
            cron.timezone,
            now or djtz.now(),
            start_time=cron.start_time,
            end_time=cron.end_time,
        )
    cron.save()
    if reschedule or enabled_changed:  # what the mirror shows (schedule, state) changed
        mirror_sync(cron)
    return cron


@transaction.atomic
def cron_delete(*, cron: Cron) -> None:
    withdraw_prepared(cron)
    # The cascade Django's collector would find, in one statement per table
    # (the collector first selects each related set: five more queries).
    Tick.objects.filter(cron_id=cron.pk).delete()  # nothing depends on ticks: one DELETE
    Run.objects.filter(cron_id=cron.pk).update(cron=None)
    Cron.objects.filter(pk=cron.pk)._raw_delete(Cron.objects.db)
    mirror_delete(cron)


# ------------------------------------------------------- trigger, backfill

# The most instants one backfill fires (a longer range is a 422).
MAX_BACKFILL_INSTANTS = 1000


def _for_firing(cron: Cron) -> Cron:
    return Cron.objects.select_related("assistant", "thread").get(pk=cron.pk)


@transaction.atomic
def cron_trigger(
    *, cron: Cron, now: datetime | None = None, overlap_policy: str | None = None
) -> Tick:
    """Fire `cron` once, now, as a manual tick through the tick path beat uses
    (crons.dispatch.fire_tick): its run is created as a scheduled tick's
    would be (as the cron's owner), due at once. A manual tick is keyed apart
    from the schedule's instants (its instant is this second; two triggers in
    one second are two ticks) and leaves the schedule as it is. A disabled
    cron may be triggered. Returns the tick: `fired` with its run_id,
    `skipped` by the overlap policy (the cron's, or `overlap_policy` for this
    tick only: stateless crons, Invalid on a thread cron), or `rejected` with
    the reason (multitask_strategy reject, the pending cap, the owner's
    permissions)."""
    if overlap_policy is not None and cron.thread_id is not None:
        raise Invalid(THREAD_OVERLAP)
    now = now or db_now()
    tick = dispatch.fire_tick(
        _for_firing(cron),
        now.replace(microsecond=0),
        kind=Tick.Kind.MANUAL,
        fire_at=now,
        reason="triggered",
        now=now,
        overlap_policy=overlap_policy,
    )
    if tick is None:  # pragma: no cover - a manual tick is never recorded already
        raise RuntimeError(f"cron {cron.pk}: the manual tick was not recorded")
    return tick


@dataclass
class BackfillReport:
    instants: int = 0
    fired: int = 0
    already_fired: int = 0
    rejected: int = 0  # refused by the multitask rules, the pending cap or the owner's permissions
    skipped: int = 0  # skipped by the backfill's overlap_policy

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def backfill_instants(cron: Cron, start: datetime, end: datetime, now: datetime) -> list[datetime]:
    """The instants of `cron` in [start, end) a backfill fires, by the fire-time
    module beat uses (DST rule included), none past the cron's end_time.
    Invalid (422) unless start < end <= now, start is within the tick
    retention (CRONSVC_RETENTION_DAYS) and there are at most
    MAX_BACKFILL_INSTANTS."""
    if start >= end:
        raise Invalid(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end > now:
        raise Invalid(
            f"end ({end.isoformat()}) is in the future (now {now.isoformat()}): "
            "a backfill fires past instants only"
        )
    days = settings.CRONSVC_RETENTION_DAYS
    oldest = now - timedelta(days=days)
    if start < oldest:
        raise Invalid(
            f"start ({start.isoformat()}) is older than the tick retention "
            f"(CRONSVC_RETENTION_DAYS={days:g}): the earliest start now is {oldest.isoformat()}"
        )
    # next_fires is strictly after: every instant >= start (instants are whole seconds).
    after = start - timedelta(microseconds=1)
    found = firetime.next_fires(cron.schedule, cron.timezone, after, MAX_BACKFILL_INSTANTS + 1)
    instants = [t for t in found if t < end and (cron.end_time is None or t <= cron.end_time)]
    if len(instants) > MAX_BACKFILL_INSTANTS:
        raise Invalid(
            f"[start, end) holds more than {MAX_BACKFILL_INSTANTS} instants of "
            f"'{cron.schedule}': backfill a shorter range (at most "
            f"{MAX_BACKFILL_INSTANTS} instants a call)"
        )
    return instants


@transaction.atomic
def cron_backfill(
    *,
    cron: Cron,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    overlap_policy: str | None = None,
) -> BackfillReport:
    """Fire every instant of `cron` in [start, end) that has not fired, once,
    in order, through the tick path (crons.dispatch): an instant without a tick
    gets a `backfill` tick and its run; one recorded `skipped` or `rejected`
    becomes `fired` by a conditional update (crons.dispatch.refire_tick); one
    already fired is left alone, so a repeated backfill fires nothing new.
    Validated before anything is written (backfill_instants). On a thread
    cron the runs queue in order, bounded by MAX_BACKFILL_INSTANTS rather than
    the pending cap. A disabled cron may be backfilled.

    A backfill's runs overlap as `overlap_policy` says (stateless crons;
    Invalid on a thread cron), each instant deciding against the runs of the
    cron still pending or running, the backfill's earlier ones included:
    `allow_all` (the default, not the cron's own policy) fires them all at
    once, `buffer_all` one after the other, `skip` only while nothing else
    of the cron is going (Temporal's backfill overlap policy)."""
    if overlap_policy is not None and cron.thread_id is not None:
        raise Invalid(THREAD_OVERLAP)
    policy = overlap_policy or Cron.OverlapPolicy.ALLOW_ALL
    now = now or db_now()
    instants = backfill_instants(cron, start, end, now)
    report = BackfillReport(instants=len(instants))
    if not instants:
        return report
    cron = _for_firing(cron)
    recorded = {
        t.scheduled_at: t
        for t in Tick.objects.filter(
            cron=cron, scheduled_at__gte=instants[0], scheduled_at__lte=instants[-1]
        ).exclude(kind=Tick.Kind.MANUAL)
    }
    for instant in instants:
        tick = recorded.get(instant)
        if tick is not None and tick.status == Tick.Status.FIRED:
            report.already_fired += 1
            continue
        if tick is not None:
            result = dispatch.refire_tick(cron, tick, overlap_policy=policy)
        else:
            result = dispatch.fire_tick(
                cron,
                instant,
                kind=Tick.Kind.BACKFILL,
                reason="backfilled",
                now=now,
                overlap_policy=policy,
            )
        if result is None:  # fired meanwhile (beat, another backfill)
            report.already_fired += 1
        elif result.status == Tick.Status.FIRED:
            report.fired += 1
        elif result.status == Tick.Status.SKIPPED:
            report.skipped += 1
        else:
            report.rejected += 1
    return report


def cron_set_enabled(*, cron: Cron, enabled: bool) -> Cron:
    """Pause or resume a cron (as PATCH {"enabled": ...} does)."""
    return cron_update(cron=cron, enabled=enabled)


class _Imported(NamedTuple):
    """One validated cron of an import, before it is written."""

    cron_id: str  # a UUID's canonical text
    schedule: str
    timezone: str | None
    payload: dict
    metadata: dict
    end_time: datetime | None
    enabled: bool
    on_run_completed: str | None
    next_run_date: datetime | None
    thread: Thread | None


def _imported(specs: list[dict], now: datetime) -> list[_Imported]:
    """The specs validated (one invalid spec: Invalid naming its index), with
    their first fire time, computed once per (schedule, timezone). The ids
    are random (uuid4) but handed out in ascending order: five of the indexes
    the rows go into lead with the id or with a constant before it (the
    crons' primary key and creation-order indexes, the mirrors' name
    indexes), so the rows fill those in order instead of touching a random
    leaf page each (1,000,000 crons: 57 s to 41 s, bench/import_scale.py)."""
    next_of: dict = {}
    ids = _sorted_ids(len(specs))
    rows: list[_Imported] = []
    keep = rows.append
    for index, spec in enumerate(specs):
        schedule, tz = spec["schedule"], spec.get("timezone") or None
        key = (schedule, tz)
        try:
            nxt = next_of[key]
        except KeyError:
            try:
                validate_schedule(schedule, tz)
            except Invalid as exc:
                raise Invalid(f"cron #{index}: {exc.detail}") from exc
            nxt = next_of[key] = firetime.next_fire(schedule, tz, now)
        payload = spec.get("payload") or {}
        if payload:
            try:
                webhook_require_valid(payload)
            except Invalid as exc:
                raise Invalid(f"cron #{index}: {exc.detail}") from exc
        end_time = spec.get("end_time")
        if end_time is not None and nxt > end_time:
            nxt = None
        thread = spec.get("thread")
        keep(
            _Imported(
                ids[index],
                schedule,
                tz,
                payload,
                spec.get("metadata") or {},
                end_time,
                spec.get("enabled", True),
                _on_run_completed(thread, spec.get("on_run_completed")),
                nxt,
                thread,
            )
        )
    return rows


def _sorted_ids(count: int) -> list[str]:
    """`count` random version 4 UUIDs (as uuid.uuid4 makes them, from one
    urandom read), in ascending order, as text: a COPY line wants the text,
    and making a uuid.UUID first doubles the cost."""
    h = os.urandom(16 * count).hex()
    return sorted(
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    )


# The version nibble is 4; the variant nibble keeps its two low random bits
# under the RFC 4122 variant's 10 (8, 9, a or b), as uuid.UUID(version=4) does.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def copy_supported() -> bool:
    """Whether imports go through COPY (PostgreSQL) rather than the ORM."""
    return connection.vendor == "postgresql"


def _json_field(value: dict) -> str:
    return copy_text(json.dumps(value)) if value else "{}"


def _crons_copy(assistant: Assistant, rows: list[_Imported], now: datetime) -> None:
    """Crons and their mirrors written with PostgreSQL COPY: no model instance,
    no statement per row (1,000,000 crons in 22 s, from 222 s with the ORM;
    bench/import_scale.py)."""
    stamp = copy_field(djtz.now())  # created_at/updated_at: the wall clock, as auto_now sets
    assistant_id = assistant.pk
    # The columns after the payload and metadata, formatted once per
    # combination: an import's mix repeats them, a line costs one lookup.
    rest_of: dict = {}

    def rest(row: _Imported) -> str:
        key = (row.schedule, row.timezone, row.end_time, row.enabled, row.on_run_completed)
        key += (row.next_run_date,)
        text = rest_of.get(key)
        if text is None:
            text = rest_of[key] = "\t".join([*map(copy_field, key), "f", stamp, f"{stamp}\n"])
        return text

    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own cursor, in the atomic block's transaction
        bulk_checked = replica_copy_allowed(cursor, _COPIED_TABLES, _COUNTER_TRIGGERS)
        if bulk_checked:
            _references_locked(cursor, assistant, rows)
            replica_role(cursor, True)
        task_ids = mirrors_copy(cursor, rows, now=now, lock_crontabs=bulk_checked)
        copy_lines(
            cursor,
            f"COPY {Cron._meta.db_table} (cron_id, periodic_task_id, assistant_id, thread_id, "
            "payload, metadata, schedule, timezone, end_time, enabled, on_run_completed, "
            "next_run_date, needs_advance, created_at, updated_at) FROM STDIN",
            (
                f"{row.cron_id}\t{task_id}\t{assistant_id}\t"
                f"{row.thread.pk if row.thread is not None else NULL}\t"
                f"{_json_field(row.payload) if row.payload else '{}'}\t"
                f"{_json_field(row.metadata) if row.metadata else '{}'}\t{rest(row)}"
                for row, task_id in zip(rows, task_ids, strict=True)
            ),
        )
        if bulk_checked:
            replica_role(cursor, False)
            enabled = sum(1 for row in rows if row.enabled)
            metrics.crons_imported(enabled=enabled, disabled=len(rows) - enabled)


# What an import writes into while its triggers are off (the COPYs, and the
# crontab rows mirrors_copy creates), and the user triggers on those tables
# (cronsvc/migrations/0008_metrics.py) whose work _crons_copy does itself
# then: counting the crons inserted.
_COPIED_TABLES = [
    Cron._meta.db_table,
    PeriodicTask._meta.db_table,
    ClockedSchedule._meta.db_table,
    CrontabSchedule._meta.db_table,
]
_COUNTER_TRIGGERS = {"cronsvc_crons_inserted", "cronsvc_crons_deleted", "cronsvc_crons_enabled"}


def _references_locked(cursor, assistant: Assistant, rows: list[_Imported]) -> None:
    """What the crons' foreign-key checks would do at commit, for a COPY
    without them, once instead of once a row: lock the assistant and the
    threads the crons reference (FOR KEY SHARE: neither can be deleted
    before commit), IntegrityError if one is gone. (Their mirrors are the
    import's own rows; mirrors_copy locks the crontabs.)"""
    if not lock_keys(cursor, Assistant._meta.db_table, "assistant_id", [assistant.pk]):
        raise IntegrityError(f"assistant {assistant.pk} of the imported crons does not exist")
    threads = [row.thread.pk for row in rows if row.thread is not None]
    if not lock_keys(cursor, Thread._meta.db_table, "thread_id", threads):
        raise IntegrityError("a thread of the imported crons does not exist")


@transaction.atomic
def crons_bulk_create(
    *, assistant: Assistant, specs: list[dict], now: datetime | None = None, batch_size: int = 5000
) -> int:
    """Create many crons at once (an import): each spec has `schedule` and
    optionally `timezone`, `payload`, `metadata`, `thread`, `enabled`,
    `end_time`, `on_run_completed`. All or nothing: one invalid spec aborts the
    import with its index in the message. Mirrors are inserted in bulk too:
    with COPY on PostgreSQL, with the ORM's bulk_create elsewhere."""
    now = now or djtz.now()
    rows = _imported(specs, now)
    if copy_supported():
        _crons_copy(assistant, rows, now)
        return len(rows)
    crons = [
        Cron(
            cron_id=uuid.UUID(row.cron_id),
            assistant=assistant,
            thread=row.thread,
            schedule=row.schedule,
            timezone=row.timezone,
            payload=row.payload,
            metadata=row.metadata,
            end_time=row.end_time,
            enabled=row.enabled,
            on_run_completed=row.on_run_completed,
            next_run_date=row.next_run_date,
            created_at=now,
        )
        for row in rows
    ]
    for start in range(0, len(crons), batch_size):
        chunk = crons[start : start + batch_size]
        mirrors_bulk_create(chunk)
        Cron.objects.bulk_create(chunk)
    return len(crons)
