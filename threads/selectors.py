"""Reads of threads."""

from django.db.models import QuerySet

from cronsvc.errors import ThreadNotFound
from cronsvc.selectors import filter_metadata, order, parse_uuid
from runs.models import Run
from threads.models import Thread

SORTABLE = {"thread_id", "status", "created_at", "updated_at"}


def thread_get_or_404(thread_id) -> Thread:
    pk = parse_uuid(thread_id)
    thread = Thread.objects.filter(pk=pk).first() if pk else None
    if thread is None:
        raise ThreadNotFound(f"Thread with ID {thread_id} not found")
    return thread


def thread_last_error(thread: Thread) -> str | None:
    """The error of the thread's last failed run (shown while the thread is `error`)."""
    return (
        Run.objects.filter(thread=thread, status=Run.Status.ERROR)
        .order_by("-created_at")
        .values_list("error", flat=True)
        .first()
    )


def thread_search(
    *,
    metadata: dict | None = None,
    values: dict | None = None,
    status: str | None = None,
    ids: list | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> QuerySet[Thread]:
    qs = Thread.objects.all()
    if ids:
        qs = qs.filter(pk__in=[p for p in (parse_uuid(i) for i in ids) if p])
    if status:
        qs = qs.filter(status=status)
    qs = filter_metadata(qs, "metadata", metadata)
    qs = filter_metadata(qs, "values", values)
    return order(qs, sort_by, sort_order, allowed=SORTABLE)
