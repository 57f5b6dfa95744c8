"""Wire formats of crons, as the LangGraph Server sends them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crons import selectors
from crons.models import Cron, Tick
from crons.retry import retry_policy_of
from cronsvc.http.outputs import IsoDateTime, ObjectOut, WireSerializer, iso
from runs.models import Run

CRON_FIELDS = [
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
    # cronsvc's scheduler control (not LangGraph's)
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
]


class RetryPolicyOut(serializers.Serializer):
    """A cron's retry_policy (crons.retry): how a failed run is attempted again."""

    max_attempts = serializers.IntegerField(
        min_value=1, help_text="attempts that may fail in all; 1: no retry (default)"
    )
    initial_interval = serializers.FloatField(help_text="seconds before the first retry (1)")
    backoff_coefficient = serializers.FloatField(
        min_value=1, help_text="each retry waits this many times longer (2.0)"
    )
    max_interval = serializers.FloatField(help_text="the longest wait, in seconds (100)")


@extend_schema_field(RetryPolicyOut(allow_null=True))
class RetryPolicyField(serializers.JSONField):
    """A retry_policy as sent: validated by crons.services (unknown keys, bounds)."""


class CronOut(WireSerializer):
    cron_id = serializers.UUIDField()
    assistant_id = serializers.UUIDField()
    thread_id = serializers.UUIDField(allow_null=True, help_text="null: a stateless cron")
    on_run_completed = serializers.ChoiceField(
        choices=["delete", "keep"], allow_null=True, help_text="stateless crons only"
    )
    end_time = IsoDateTime(allow_null=True)
    schedule = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    user_id = serializers.CharField(allow_null=True)
    payload = ObjectOut(help_text="the run's body, as sent")
    next_run_date = serializers.SerializerMethodField()
    metadata = ObjectOut()
    enabled = serializers.BooleanField()
    overlap_policy = serializers.SerializerMethodField(
        help_text="stateless crons (null on a thread cron, which uses multitask_strategy)"
    )
    start_time = IsoDateTime(allow_null=True, help_text="no instant before it fires")
    max_runs = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    remaining_runs = serializers.IntegerField(
        allow_null=True,
        help_text="scheduled ticks left to fire of max_runs; at 0 the cron disables itself",
    )
    paused_reason = serializers.CharField(
        allow_null=True, help_text="why the cron disabled itself; null otherwise"
    )
    catchup_window = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "seconds a missed instant (beat or database down) may still fire; "
            "null: the server's CRONSVC_MISSED_TICK_GRACE"
        ),
    )
    catchup = serializers.ChoiceField(
        choices=[c.value for c in Cron.Catchup],
        help_text="which missed instants within catchup_window fire: the latest, or all in order",
    )
    jitter = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "each instant's run starts up to this many seconds late (a stable offset, "
            "before the next instant); null or 0: on time"
        ),
    )
    retry_policy = serializers.SerializerMethodField()
    max_consecutive_failures = serializers.IntegerField(
        allow_null=True,
        help_text="failed runs in a row after which the cron disables itself; null: never",
    )
    consecutive_failures = serializers.IntegerField(
        help_text="its runs that failed in a row, up to now (a success resets it)"
    )
    last_run_date = IsoDateTime(
        allow_null=True, help_text="when its last run reached a final status; null: none yet"
    )
    last_run_status = serializers.ChoiceField(
        source="last_run_final_status",
        choices=Run.Status.values,
        allow_null=True,
        help_text="that run's final status",
    )

    @extend_schema_field(RetryPolicyOut())
    def get_retry_policy(self, cron: Cron) -> dict:
        return retry_policy_of(cron.retry_policy)

    @extend_schema_field(IsoDateTime(allow_null=True))
    def get_next_run_date(self, cron: Cron) -> str | None:
        next_run: datetime | None = selectors.cron_next_run_date(cron)
        return iso(next_run)

    @extend_schema_field(
        serializers.ChoiceField(choices=[c.value for c in Cron.OverlapPolicy], allow_null=True)
    )
    def get_overlap_policy(self, cron: Cron) -> str | None:
        return _overlap_policy(cron)


def _overlap_policy(cron: Cron) -> str | None:
    return cron.overlap_policy if cron.thread_id is None else None


def _uuid(value) -> str | None:
    return str(value) if value is not None else None


# How each field is written from a cron, and the columns it reads: the same
# output as CronOut (which documents it), at a fraction of a serializer's cost,
# and only the selected fields are read.
_WRITERS: dict[str, tuple[Callable[[Cron], Any], tuple[str, ...]]] = {
    "cron_id": (lambda c: str(c.cron_id), ("cron_id",)),
    "assistant_id": (lambda c: str(c.assistant_id), ("assistant_id",)),
    "thread_id": (lambda c: _uuid(c.thread_id), ("thread_id",)),
    "on_run_completed": (lambda c: c.on_run_completed, ("on_run_completed",)),
    "end_time": (lambda c: iso(c.end_time), ("end_time",)),
    "schedule": (lambda c: c.schedule, ("schedule",)),
    "timezone": (lambda c: c.timezone, ("timezone",)),
    "created_at": (lambda c: iso(c.created_at), ("created_at",)),
    "updated_at": (lambda c: iso(c.updated_at), ("updated_at",)),
    "user_id": (lambda c: c.user_id, ("user_id",)),
    "payload": (lambda c: c.payload, ("payload",)),
    "next_run_date": (
        lambda c: iso(selectors.cron_next_run_date(c)),
        ("next_run_date", "needs_advance", "last_tick_at", "schedule", "timezone", "end_time"),
    ),
    "metadata": (lambda c: c.metadata, ("metadata",)),
    "enabled": (lambda c: bool(c.enabled), ("enabled",)),
    "overlap_policy": (_overlap_policy, ("overlap_policy", "thread_id")),
    "start_time": (lambda c: iso(c.start_time), ("start_time",)),
    "max_runs": (lambda c: c.max_runs, ("max_runs",)),
    "remaining_runs": (lambda c: c.remaining_runs, ("remaining_runs",)),
    "paused_reason": (lambda c: c.paused_reason, ("paused_reason",)),
    "catchup_window": (lambda c: c.catchup_window, ("catchup_window",)),
    "catchup": (lambda c: c.catchup, ("catchup",)),
    "jitter": (lambda c: c.jitter, ("jitter",)),
    "retry_policy": (lambda c: retry_policy_of(c.retry_policy), ("retry_policy",)),
    "max_consecutive_failures": (
        lambda c: c.max_consecutive_failures,
        ("max_consecutive_failures",),
    ),
    "consecutive_failures": (lambda c: c.consecutive_failures, ("consecutive_failures",)),
    "last_run_date": (lambda c: iso(c.last_run_date), ("last_run_date",)),
    "last_run_status": (lambda c: c.last_run_final_status, ("last_run_final_status",)),
}


def cron_columns(select: list[str] | None) -> list[str]:
    """The columns `cron_out(cron, select)` reads (for `.only()`)."""
    names = select or CRON_FIELDS
    return list(dict.fromkeys(column for name in names for column in _WRITERS[name][1]))


def cron_out(cron: Cron, select: list[str] | None = None) -> dict:
    """A cron on the wire; with `select`, only those fields, in that order."""
    return {name: _WRITERS[name][0](cron) for name in (select or CRON_FIELDS)}


class TickOut(WireSerializer):
    """One tick of a cron: an instant of its schedule (or a manual trigger)
    and what became of it."""

    scheduled_at = IsoDateTime(
        help_text="the instant (the exactly-once key); a manual tick: the second it came"
    )
    fire_at = IsoDateTime(
        help_text="when it fired (or was to fire): its instant plus the cron's jitter offset"
    )
    kind = serializers.ChoiceField(choices=Tick.Kind.values)
    status = serializers.ChoiceField(choices=Tick.Status.values)
    reason = serializers.CharField(help_text="why skipped or rejected; how it fired")
    run_id = serializers.UUIDField(allow_null=True)
    run_status = serializers.ChoiceField(
        choices=Run.Status.values, allow_null=True, help_text="null: no run, or it was deleted"
    )
    attempts = serializers.IntegerField(
        allow_null=True, help_text="the run's attempts so far; null: no run"
    )
    created_at = IsoDateTime()


def tick_out(tick: Tick, runs: dict) -> dict:
    """A tick on the wire; `runs` is run_id -> (status, attempts) (crons.selectors.tick_runs)."""
    run_status, attempts = runs.get(tick.run_id, (None, None))
    return {
        "scheduled_at": iso(tick.scheduled_at),
        "fire_at": iso(tick.fire_at or tick.scheduled_at),
        "kind": tick.kind,
        "status": tick.status,
        "reason": tick.reason,
        "run_id": _uuid(tick.run_id),
        "run_status": run_status,
        "attempts": attempts,
        "created_at": iso(tick.created_at),
    }


class ScheduleOut(serializers.Serializer):
    timezone = serializers.CharField(help_text="the cron's timezone (UTC when it has none)")
    next = serializers.ListField(
        child=IsoDateTime(), help_text="the next instants from now, in UTC, ascending"
    )


class BackfillOut(serializers.Serializer):
    instants = serializers.IntegerField(help_text="instants of the schedule in [start, end)")
    fired = serializers.IntegerField(help_text="instants fired by this call")
    already_fired = serializers.IntegerField(help_text="instants that had fired already")
    rejected = serializers.IntegerField(
        help_text="instants refused (multitask_strategy reject, the owner's permissions)"
    )
    skipped = serializers.IntegerField(help_text="instants the backfill's overlap_policy skipped")
