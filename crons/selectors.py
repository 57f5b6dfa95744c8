"""Reads of crons."""

from django.db.models import QuerySet

from crons import firetime
from crons.models import Cron, Tick
from cronsvc.errors import CronNotFound
from cronsvc.selectors import assistant_id_from, filter_metadata, order, parse_uuid

SORTABLE = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "next_run_date",
    "end_time",
    "created_at",
    "updated_at",
}


def cron_get_or_404(cron_id) -> Cron:
    pk = parse_uuid(cron_id)
    # No first(): it would sort the one row by the model's ordering.
    cron = next(iter(Cron.objects.filter(pk=pk).order_by()[:1]), None) if pk else None
    if cron is None:
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
    qs = Cron.objects.all()
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


def cron_ticks(cron: Cron) -> QuerySet[Tick]:
    return Tick.objects.filter(cron=cron).order_by("-scheduled_at")


def cron_next_run_date(cron: Cron):
    """The next fire instant, also for a cron whose advance is still queued."""
    if cron.needs_advance and cron.last_tick_at is not None:
        return firetime.next_run(
            cron.schedule, cron.timezone, cron.last_tick_at, end_time=cron.end_time
        )
    return cron.next_run_date
