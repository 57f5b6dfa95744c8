"""Writes of runs: create and delete. What happens to a run after it was
created (claim, finish, cancel, requeue, rollback) is runs.lifecycle's.

A run is created `pending` in the same transaction as whatever caused it (an
API call or a cron tick); a Celery message published after commit
(runs.wakeups) wakes a worker, which claims the oldest pending run of the
thread (pending → running, one running run per thread) — so a redelivered or
duplicate message finds nothing to claim and returns.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from cronsvc.errors import Conflict
from cronsvc.models import Assistant
from runs import locks, wakeups
from runs.lifecycle import ACTIVE, run_request_cancel
from runs.models import Run
from runs.wakeups import wake_fanout, wake_workers  # noqa: F401 - re-exported for crons.ticking
from threads.models import Thread


class ThreadBusy(Conflict):
    pass


class TooManyPending(Conflict):
    pass


@transaction.atomic
def run_create(
    *,
    thread: Thread,
    assistant: Assistant,
    kwargs: dict[str, Any] | None = None,
    metadata: dict | None = None,
    multitask_strategy: str | None = None,
    on_completion: str | None = None,
    cron_id: uuid.UUID | None = None,
    scheduled_at: datetime | None = None,
    max_pending: int | None = None,
    streamed: bool = False,
) -> Run:
    """Create a pending run on `thread` and wake a worker after commit.

    Raises ThreadBusy for `reject` on a thread with an active run, and
    TooManyPending when `max_pending` runs already wait on the thread."""
    strategy = multitask_strategy or Run.MultitaskStrategy.ENQUEUE
    thread = locks.lock_existing_thread(thread.pk)
    active = Run.objects.filter(thread=thread, status__in=ACTIVE)
    if strategy == Run.MultitaskStrategy.REJECT and active.exists():
        raise ThreadBusy(
            f"Thread {thread.thread_id} is busy with another run (multitask_strategy=reject)"
        )
    if strategy in (Run.MultitaskStrategy.INTERRUPT, Run.MultitaskStrategy.ROLLBACK):
        for other in active:
            run_request_cancel(other, action=strategy)
    if max_pending is not None:
        pending = Run.objects.filter(thread=thread, status=Run.Status.PENDING).count()
        if pending >= max_pending:
            raise TooManyPending(
                f"Thread {thread.thread_id} already has {pending} pending runs (limit {max_pending})"
            )
    run = Run.objects.create(
        thread=thread,
        assistant=assistant,
        kwargs=kwargs or {},
        metadata=metadata or {},
        multitask_strategy=strategy,
        on_completion=on_completion,
        cron_id=cron_id,
        scheduled_at=scheduled_at,
        streamed=streamed,
    )
    thread.graph_id = assistant.graph_id
    thread.metadata = {
        **thread.metadata,
        "graph_id": assistant.graph_id,
        "assistant_id": str(assistant.assistant_id),
    }
    thread.status = Thread.Status.BUSY
    thread.save(update_fields=["graph_id", "metadata", "status", "updated_at"])
    wakeups.wake_thread_after_commit(thread.thread_id)
    return run


@transaction.atomic
def run_delete(*, run: Run) -> None:
    run = locks.lock_existing_run(run.pk)
    if run.status == Run.Status.RUNNING:
        raise Conflict(f"Run {run.run_id} is running; cancel it before deleting it")
    Run.objects.filter(pk=run.pk).delete()


def pending_cap() -> int:
    return settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD

