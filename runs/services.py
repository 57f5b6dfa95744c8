"""Writes of runs: create, claim, finish, cancel, delete.

A run is created `pending` in the same transaction as whatever caused it (an
API call or a cron tick); a Celery message published after commit wakes a
worker, which claims the oldest pending run of the thread (pending → running,
one running run per thread) — so a redelivered or duplicate message finds
nothing to claim and returns.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    IntegerField,
    Q,
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from cronsvc.errors import Conflict
from cronsvc.models import Assistant
from runs.models import Run
from threads.models import Thread

log = logging.getLogger(__name__)

ACTIVE = (Run.Status.PENDING, Run.Status.RUNNING)


class ThreadBusy(Conflict):
    pass


class TooManyPending(Conflict):
    pass


def _wake(thread_id) -> None:
    from runs.tasks import drain

    with wake_lost_is_logged():
        drain.delay(str(thread_id))


def wake_workers(count: int) -> None:
    """Publish `count` wake-ups over one connection; each worker slot that takes
    one drains ready runs until none is left."""
    from runs.tasks import drain

    with wake_lost_is_logged(), drain.app.producer_or_acquire() as producer:
        for _ in range(count):
            drain.apply_async(producer=producer)


def wake_fanout(ready: int) -> int:
    """Wake-ups for `ready` runs that became claimable at once: one per live
    worker slot (their heartbeats say how many), at least CRONSVC_WAKE_FANOUT
    (heartbeats not written yet), never more than the runs. Each slot woken
    drains ready runs until none is left, so a burst uses every slot."""
    from cronsvc.heartbeats import live_worker_slots

    return min(ready, max(settings.CRONSVC_WAKE_FANOUT, live_worker_slots()))


@contextmanager
def wake_lost_is_logged():
    """A wake-up the broker refused (down, restarting) is logged, not raised:
    the run is committed, and the reconciler (runs.leases) wakes a worker for
    it after CRONSVC_RECONCILE_AFTER seconds. Raising would fail an API call
    whose run exists, or stop beat."""
    try:
        yield
    except (KombuOperationalError, OSError) as exc:
        log.warning(
            "wake-up not published (%s); the reconciler wakes a worker within %g s",
            exc, settings.CRONSVC_RECONCILE_AFTER + settings.CRONSVC_RECONCILE_INTERVAL,
        )


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
    thread = Thread.objects.select_for_update().get(pk=thread.pk)
    active = Run.objects.filter(thread=thread, status__in=ACTIVE)
    if strategy == Run.MultitaskStrategy.REJECT and active.exists():
        raise ThreadBusy(
            f"Thread {thread.thread_id} is busy with another run (multitask_strategy=reject)"
        )
    if strategy in (Run.MultitaskStrategy.INTERRUPT, Run.MultitaskStrategy.ROLLBACK):
        for other in active:
            _request_cancel(other, action=strategy)
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
    transaction.on_commit(lambda: _wake(thread.thread_id))
    return run


def _request_cancel(run: Run, *, action: str) -> None:
    """Cancel `run`, locked (or its thread locked) by the caller's transaction.

    A pending run ends here: deleted by a rollback, else interrupted and
    finished like any other run (its webhook is sent; a stateless run's thread
    goes). A running one is flagged for its worker, which stops between steps."""
    if run.status == Run.Status.PENDING:
        if action == Run.MultitaskStrategy.ROLLBACK:
            run.delete()
            if run.on_completion == "delete":
                _delete_thread_later(run.thread_id)
        else:
            Run.objects.filter(pk=run.pk).update(cancel_action=action)
            _finish_locked(
                run, status=Run.Status.INTERRUPTED, output=None, error=None, values=KEEP_VALUES
            )
    elif run.status == Run.Status.RUNNING:
        Run.objects.filter(pk=run.pk).update(cancel_action=action, updated_at=timezone.now())


@transaction.atomic
def run_cancel(*, run: Run, action: str = "interrupt") -> None:
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status in Run.FINISHED:
        return
    _request_cancel(run, action=action)
    if run.status == Run.Status.PENDING:
        _settle_thread(run.thread_id)


@transaction.atomic
def run_delete(*, run: Run) -> None:
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status == Run.Status.RUNNING:
        raise Conflict(f"Run {run.run_id} is running; cancel it before deleting it")
    Run.objects.filter(pk=run.pk).delete()


# A run prepared ahead of its cron's instant is not ready before it (the
# database's clock decides, as it does for beat).
READY = Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=Now())


def lease_expiry():
    """When a lease taken or renewed now expires, on the database's clock."""
    return ExpressionWrapper(
        Now() + timedelta(seconds=settings.CRONSVC_RUN_LEASE_SECONDS),
        output_field=DateTimeField(),
    )


def _claim(run: Run) -> Run | None:
    """pending → running for `run`, under its thread's row lock (caller's transaction).

    The claim takes the run's lease (runs.leases) and counts the attempt."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run.pk, status=Run.Status.PENDING).update(
        status=Run.Status.RUNNING, started_at=now, updated_at=now, attempts=run.attempts + 1,
        lease_expires_at=lease_expiry(),
    )
    if not claimed:
        return None
    run.refresh_from_db()
    return run


def _thread_head(thread_id) -> tuple[Any, str, bool] | None:
    """(run_id, status, ready) of the run that decides what a thread may claim
    next: its running run if it has one, else its oldest pending run. One query."""
    return (
        Run.objects.filter(thread_id=thread_id, status__in=ACTIVE)
        .annotate(
            running_first=Case(
                When(status=Run.Status.RUNNING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            ),
            ready=ExpressionWrapper(READY, output_field=BooleanField()),
        )
        .order_by("running_first", "created_at", "run_id")
        .values_list("run_id", "status", "ready")
        .first()
    )


def _lock_thread(thread_id, *, skip_locked: bool = False) -> bool:
    """Lock a thread's row (caller's transaction) without reading its values.
    False when it does not exist, or, with skip_locked, another claimer holds it."""
    return (
        Thread.objects.select_for_update(skip_locked=skip_locked)
        .filter(pk=thread_id)
        .values_list("pk", flat=True)
        .first()
        is not None
    )


def run_claim_next(*, thread_id) -> Run | None:
    """Claim the oldest pending run of a thread, unless one is running there.

    The thread row lock serialises claimers; the status compare-and-set makes a
    second claim of the same run impossible."""
    with transaction.atomic():
        if not _lock_thread(thread_id):
            return None
        head = _thread_head(thread_id)
        if head is None or head[1] == Run.Status.RUNNING or not head[2]:
            return None  # nothing pending, one running, or the oldest waits for its instant
        return _claim(Run.objects.get(pk=head[0]))


CLAIM_SCAN = 20


def run_claim_ready() -> Run | None:
    """Claim the oldest pending run whose thread has nothing running, any thread.

    Rows other workers are claiming are skipped (SKIP LOCKED), so many workers
    drain a burst of runs side by side."""
    skipped_threads: set = set()
    for _ in range(50):
        with transaction.atomic():
            candidates = list(
                Run.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(READY, status=Run.Status.PENDING)
                .exclude(thread_id__in=skipped_threads)
                .order_by("created_at", "run_id")[:CLAIM_SCAN]
            )
            if not candidates:
                return None
            for run in candidates:
                if run.thread_id in skipped_threads:
                    continue
                head = _thread_head(run.thread_id) if _lock_thread(
                    run.thread_id, skip_locked=True
                ) else None
                if head is None or head[1] == Run.Status.RUNNING:
                    skipped_threads.add(run.thread_id)
                    continue
                if head[0] != run.pk:
                    if not head[2]:
                        skipped_threads.add(run.thread_id)
                        continue
                    run = Run.objects.get(pk=head[0])  # keep each thread's runs in order
                return _claim(run)
    return None


def run_cancel_requested(run_id) -> str | None:
    return Run.objects.filter(pk=run_id).values_list("cancel_action", flat=True).first()


def _settled_status(thread_id) -> str:
    """A thread's status from its runs: busy while any is active, else from the
    last one. One query."""
    last = (
        Run.objects.filter(thread_id=thread_id)
        .annotate(
            active=Exists(Run.objects.filter(thread_id=thread_id, status__in=ACTIVE))
        )
        .order_by("-created_at")
        .values("status", "cancel_action", "active")
        .first()
    )
    if last is None:
        return Thread.Status.IDLE
    if last["active"]:
        return Thread.Status.BUSY
    if last["status"] == Run.Status.ERROR:
        return Thread.Status.ERROR
    if last["status"] == Run.Status.INTERRUPTED and last["cancel_action"] is None:
        return Thread.Status.INTERRUPTED
    return Thread.Status.IDLE


def _settle_thread(thread_id, **fields) -> None:
    """Set the thread's status from its runs (and `fields`), in one update."""
    Thread.objects.filter(pk=thread_id).update(
        status=_settled_status(thread_id), updated_at=timezone.now(), **fields
    )


def run_finish(
    *,
    run_id,
    status: str,
    output: Any = None,
    error: str | None = None,
    values: Any = None,
    attempt: int | None = None,
) -> bool:
    """Record a run's end. Idempotent: only a running run is finished, once.

    With `attempt`, only that attempt may finish it: a worker whose lease
    expired (the run was reaped and claimed again) cannot end the run.
    Called after the graph's checkpoint is written, so the run's status is the
    last thing to change."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != Run.Status.RUNNING:
            return False
        if attempt is not None and run.attempts != attempt:
            return False
        _finish_locked(run, status=status, output=output, error=error, values=values)
    return True


def run_rolled_back(*, run_id, values: Any, attempt: int) -> bool:
    """A running run cancelled with `rollback` whose checkpoints the executor
    undid: delete it (no webhook: it no longer exists) and give its thread the
    values it had before it. Only the attempt that holds the run may do so."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != Run.Status.RUNNING or run.attempts != attempt:
            return False
        run.delete()
        _settle_thread(run.thread_id, values=values)
        if run.on_completion == "delete":
            _delete_thread_later(run.thread_id)
    return True


KEEP_VALUES = object()


def _finish_locked(
    run: Run, *, status: str, output: Any, error: str | None, values: Any = KEEP_VALUES
) -> None:
    """End a running run locked by the caller's transaction; after commit,
    delete a stateless run's thread and deliver its webhook. The thread's
    values are left as they are with KEEP_VALUES."""
    now = timezone.now()
    webhook = (run.kwargs or {}).get("webhook")
    Run.objects.filter(pk=run.pk).update(
        status=status, output=output, error=error, finished_at=now, updated_at=now,
        lease_expires_at=None,
        webhook_status=Run.WebhookStatus.PENDING if webhook else None,
    )
    _settle_thread(run.thread_id, **({} if values is KEEP_VALUES else {"values": values}))
    run_id, thread_id = run.pk, run.thread_id
    if webhook:
        from runs.tasks import deliver_webhook

        # robust: a broker blip must not fail the finish; the reconciler
        # re-enqueues deliveries left pending.
        transaction.on_commit(lambda: deliver_webhook.delay(str(run_id)), robust=True)
    if run.on_completion == "delete":
        _delete_thread_later(thread_id)


def _delete_thread_later(thread_id) -> None:
    """After commit, delete a stateless run's thread once it is idle. Deferred
    a little, so a client waiting on the run still reads its result (and its
    webhook its values)."""
    from runs.tasks import delete_stateless_thread

    transaction.on_commit(
        lambda: delete_stateless_thread.apply_async(
            (str(thread_id),), countdown=settings.CRONSVC_STATELESS_THREAD_GRACE
        )
    )


def thread_delete_when_idle(*, thread_id) -> None:
    """Delete a stateless run's thread once nothing else waits on it."""
    from threads.services import thread_delete

    with transaction.atomic():
        thread = Thread.objects.select_for_update().filter(pk=thread_id).first()
        if thread is None:
            return
        if Run.objects.filter(thread=thread, status__in=ACTIVE).exists():
            return
        thread_delete(thread=thread)


def pending_cap() -> int:
    return settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD

