"""Reads of runs."""

from django.db.models import QuerySet

from cronsvc import statements
from cronsvc.errors import RunNotFound
from cronsvc.selectors import parse_uuid
from runs.models import Run
from threads.models import Thread
from threads.selectors import thread_auth_q


def run_get_or_404(*, thread: Thread | None, run_id) -> Run:
    pk = parse_uuid(run_id)
    if pk is None:
        raise RunNotFound(f"Run '{run_id}' not found")
    if thread is not None:
        run = statements.first(
            "run-of-thread",
            lambda pk, thread_pk: Run.objects.filter(pk=pk, thread=thread_pk),
            pk,
            thread.pk,
        )
    else:  # the run's thread was not looked up: custom auth's threads.read decides here
        run = statements.first(
            "run",
            lambda pk: Run.objects.filter(
                thread_auth_q("read", {"thread_id": None, "run_id": pk}, "thread__metadata"),
                pk=pk,
            ),
            pk,
        )
    if run is None:
        raise RunNotFound(f"Run '{run_id}' not found")
    return run


def run_list(*, thread: Thread, status: str | None = None) -> QuerySet[Run]:
    qs = Run.objects.filter(thread=thread).order_by("-created_at", "-run_id")
    if status:
        qs = qs.filter(status=status)
    return qs


def run_is_finished(run_id) -> bool:
    """True when the run is finished or gone (deleted with its thread)."""
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return status is None or status in Run.FINISHED
