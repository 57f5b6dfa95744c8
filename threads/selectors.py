"""Reads of threads."""

from django.db.models import Q, QuerySet

from cronsvc import checkpointer, custom_auth, statements
from cronsvc.errors import ThreadNotFound
from cronsvc.selectors import filter_metadata, order, parse_uuid
from runs.models import Run
from threads.models import Thread

SORTABLE = {"thread_id", "status", "created_at", "updated_at"}


def thread_auth_q(action: str, value: dict, field: str = "metadata") -> Q:
    """The threads the current user may `action` (custom auth; all without it).
    `field`: the thread's metadata as seen from the queried model."""
    return custom_auth.filter_q(custom_auth.authorize("threads", action, value), field)


def thread_get_or_404(
    thread_id, *, action: str | None = "read", auth_filter: dict | None = None
) -> Thread:
    """The thread; with custom auth, one the current user may `action`
    (threads.read by default; None: the caller authorized and passes the
    handler's `auth_filter`). A thread the filter hides is not found."""
    pk = parse_uuid(thread_id)

    def build(pk) -> QuerySet[Thread]:
        qs = Thread.objects.filter(pk=pk)
        if action is not None:
            return qs.filter(thread_auth_q(action, {"thread_id": pk}))
        return qs.filter(custom_auth.filter_q(auth_filter))

    if pk is None:
        thread = None
    elif action is None and auth_filter:  # the caller's filter, in the SQL: not compiled once
        thread = build(pk).first()
    else:
        thread = statements.first(f"thread:{action}", build, pk)
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
    qs = Thread.objects.filter(
        thread_auth_q(
            "search",
            {"metadata": metadata or {}, "values": values or {}, "status": status, "ids": ids},
        )
    )
    if ids:
        qs = qs.filter(pk__in=[p for p in (parse_uuid(i) for i in ids) if p])
    if status:
        qs = qs.filter(status=status)
    qs = filter_metadata(qs, "metadata", metadata)
    qs = filter_metadata(qs, "values", values)
    return order(qs, sort_by, sort_order, allowed=SORTABLE)


def thread_storage(thread: Thread) -> dict:
    """The bytes the thread occupies in LangGraph's saver (cronsvc.checkpointer)."""
    return checkpointer.thread_storage(str(thread.thread_id))
