"""Reads of crons."""

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from crons import firetime
from crons.models import Cron, Tick
from cronsvc import custom_auth, metrics, statements
from cronsvc.errors import CronNotFound
from cronsvc.selectors import assistant_id_from, filter_metadata, order, parse_uuid
from runs.models import Run
from threads.models import Thread
from threads.selectors import thread_auth_q

SORTABLE = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "next_run_date",
    "end_time",
    "created_at",
    "updated_at",
}


def cron_auth_q(action: str, value: dict) -> Q:
    """The crons the current user may `action` in a search (custom auth; all
    without it): crons.<action>'s filter on the cron's metadata, and
    threads.read's on a thread cron's thread (asked with the searched
    thread_id, if any)."""
    allowed = custom_auth.filter_q(custom_auth.authorize("crons", action, value))
    if custom_auth.current_user() is not None:
        readable = custom_auth.authorize("threads", "read", {"thread_id": value.get("thread_id")})
        allowed &= custom_auth.null_or_related_filter_q("thread_id", Thread, readable)
    return allowed


def cron_thread_visible(cron: Cron) -> bool:
    """Whether the current user's threads.read lets a thread cron's thread
    through (custom auth): a cron on a thread the user may not read is not
    found, whatever it is done with (get, update, delete), as it is left out
    of search and count. True for a stateless cron, or without a user."""
    if cron.thread_id is None or custom_auth.current_user() is None:
        return True
    thread_q = thread_auth_q("read", {"thread_id": cron.thread_id})
    return not thread_q or Thread.objects.filter(pk=cron.thread_id).filter(thread_q).exists()


def cron_get_or_404(cron_id, *, action: str | None = "read") -> Cron:
    """The cron; with custom auth, one the current user may `action`
    (crons.read by default; None: the caller authorizes) on a thread it may
    read (cron_thread_visible)."""
    pk = parse_uuid(cron_id)
    qs = Cron.objects.filter(pk=pk)
    if pk and action is not None:
        qs = qs.filter(
            custom_auth.filter_q(custom_auth.authorize("crons", action, {"cron_id": pk}))
        )
    # No first(): it would sort the one row by the model's ordering.
    cron = next(iter(qs.order_by()[:1]), None) if pk else None
    if cron is None or (action is not None and not cron_thread_visible(cron)):
        raise CronNotFound(f"Cron '{cron_id}' not found")
    return cron


def cron_search(
    *,
    assistant_id: str | None = None,
    thread_id: str | None = None,
    enabled: bool | None = None,
    metadata: dict | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> QuerySet[Cron]:
    qs = Cron.objects.filter(
        cron_auth_q(
            "search",
            {"assistant_id": assistant_id_from(assistant_id or ""), "thread_id": thread_id},
        )
    )
    if assistant_id:
        # Accepts a graph name as well as a UUID (the reference server refuses names).
        qs = (
            qs.filter(assistant_id=assistant_id_from(assistant_id))
            if assistant_id_from(assistant_id)
            else qs.none()
        )
    if thread_id:
        pk = parse_uuid(thread_id)
        qs = qs.filter(thread_id=pk) if pk else qs.none()
    if enabled is not None:
        qs = qs.filter(enabled=enabled)
    qs = filter_metadata(qs, "metadata", metadata)
    return order(qs, sort_by or "created_at", sort_order or "desc", allowed=SORTABLE)


def cron_count(
    *,
    assistant_id: str | None = None,
    thread_id: str | None = None,
    enabled: bool | None = None,
    metadata: dict | None = None,
) -> int:
    """How many crons cron_search(...) with the same arguments finds: for an
    unfiltered search (`_unfiltered`) on PostgreSQL, from the counters the
    crons table's triggers keep (cronsvc.metrics: exact, and as fast at a
    million crons as at ten); otherwise COUNT(*) (its SQL compiled once per
    filter: cronsvc.statements)."""
    if _unfiltered(assistant_id, thread_id, metadata):
        total = metrics.crons_total(enabled)
        if total is not None:
            return total
    filters = {
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "enabled": enabled,
        "metadata": metadata,
    }
    key = statements.key_of("crons.search", filters)
    return statements.count(key, lambda: cron_search(**filters))


def cron_counted_total_sql(
    *,
    assistant_id: str | None = None,
    thread_id: str | None = None,
    enabled: bool | None = None,
    metadata: dict | None = None,
) -> tuple[str, list] | None:
    """The counters' statement for cron_count's total of an unfiltered search,
    for a search page that sends it with its own (one round trip); None where
    the total has to be counted (a filter, or SQLite)."""
    if _unfiltered(assistant_id, thread_id, metadata):
        return metrics.crons_total_sql(enabled)
    return None


def _unfiltered(assistant_id, thread_id, metadata) -> bool:
    """No argument but `enabled`, and no custom-auth user (whose filter applies)."""
    return not (assistant_id or thread_id or metadata) and custom_auth.current_user() is None


def cron_ticks(cron: Cron, *, status: str | None = None) -> QuerySet[Tick]:
    """A cron's ticks, newest first (manual ones by their second, then as made)."""
    qs = Tick.objects.filter(cron=cron)
    if status is not None:
        qs = qs.filter(status=status)
    return qs.order_by("-scheduled_at", "-id")


def tick_run(tick: Tick) -> Run | None:
    """The run a tick created, while it exists."""
    if tick.run_id is None:
        return None
    return Run.objects.filter(pk=tick.run_id).order_by().first()


def tick_runs(ticks: list[Tick]) -> dict:
    """run_id -> (status, attempts) of the ticks' runs that still exist."""
    run_ids = {t.run_id for t in ticks if t.run_id is not None}
    rows = Run.objects.filter(pk__in=run_ids).values_list("run_id", "status", "attempts")
    return {run_id: (status, attempts) for run_id, status, attempts in rows}


def cron_next_fires(cron: Cron, *, after: datetime, limit: int) -> list[datetime]:
    """The cron's next `limit` instants after `after`, by the fire-time module
    beat uses (DST rule included); none before its start_time or past its
    end_time, and no more than its remaining_runs (max_runs)."""
    start = cron.start_time
    if start is not None and start > after:
        after = start - timedelta(seconds=1)
    if cron.remaining_runs is not None:
        limit = min(limit, cron.remaining_runs)
    instants = firetime.next_fires(cron.schedule, cron.timezone, after, limit + 1)
    return [
        t
        for t in instants
        if (start is None or t >= start) and (cron.end_time is None or t <= cron.end_time)
    ][:limit]


def cron_next_run_date(cron: Cron):
    """The next fire instant, also for a cron whose advance is still queued."""
    if cron.needs_advance and cron.last_tick_at is not None:
        return firetime.next_run(
            cron.schedule, cron.timezone, cron.last_tick_at, end_time=cron.end_time
        )
    return cron.next_run_date
