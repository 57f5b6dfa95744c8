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
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cronsvc import custom_auth, graphs
from cronsvc.dbclock import db_now
from cronsvc.errors import AssistantNotFound, Conflict, Invalid, NotFound, ThreadNotFound
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_id_from, parse_uuid
from cronsvc.services import assistant_resolve, config_and_context
from runs import locks, wakeups
from runs.lifecycle import ACTIVE, run_cancel, run_request_cancel
from runs.models import Run
from runs.webhooks.guard import url_problem
from threads import ttl as thread_ttl
from threads.models import Thread
from threads.selectors import thread_get_or_404
from threads.services import thread_create


class ThreadBusy(Conflict):
    pass


class TooManyPending(Conflict):
    pass


# Nested without a savepoint (two round trips): its callers that go on after
# a refusal (crons.dispatch's ticks) hold a savepoint of their own.
@transaction.atomic(savepoint=False)
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
    not_before: datetime | None = None,
    max_pending: int | None = None,
    streamed: bool = False,
    after_run_id: uuid.UUID | None = None,
) -> Run:
    """Create a pending run on `thread` and wake a worker after commit.

    Raises ThreadBusy for `reject` on a thread with an active run, and
    TooManyPending when `max_pending` runs already wait on the thread. With
    `after_run_id` (a buffered cron tick) no worker claims the run while that
    run is pending or running (runs.lifecycle), nor before `not_before` (a
    jittered cron tick's, or a run's `after_seconds`)."""
    strategy = multitask_strategy or Run.MultitaskStrategy.ENQUEUE
    thread = locks.lock_existing_thread(thread.pk)
    if strategy != Run.MultitaskStrategy.ENQUEUE:  # the default looks at no other run
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
        not_before=not_before,
        streamed=streamed,
        after_run_id=after_run_id,
    )
    thread.graph_id = assistant.graph_id
    thread.metadata = {
        **thread.metadata,
        "graph_id": assistant.graph_id,
        "assistant_id": str(assistant.assistant_id),
    }
    thread.status = Thread.Status.BUSY
    fields = ["graph_id", "metadata", "status", "updated_at"]
    if thread.ttl_minutes is not None:  # a run keeps its thread from expiring (threads.ttl)
        thread.expires_at = thread_ttl.expiry(thread.ttl_minutes, timezone.now())
        fields.append("expires_at")
    thread.save(update_fields=fields)
    wakeups.wake_thread_after_commit(thread.thread_id)
    return run


# Body keys that are about creating the run, not what it executes.
NOT_KWARGS = {
    "assistant_id",
    "metadata",
    "multitask_strategy",
    "if_not_exists",
    "on_completion",
    "after_seconds",
}

NOT_FOUND = "Thread or assistant not found."

# `after_seconds`: a run waits out its delay as `not_before` (no worker claims it
# sooner; the thread's later runs wait behind it, as behind any pending run). Up
# to an hour, a wake-up is published for its time (a Celery countdown, which a
# worker holds in memory meanwhile); a longer delay is the reconciler's, which
# wakes a ready run within CRONSVC_RECONCILE_AFTER + CRONSVC_RECONCILE_INTERVAL
# of its time, as it wakes any run whose wake-up was lost.
DELAYED_WAKE_MAX = 3600.0


def run_assistant(value: str) -> Assistant:
    """A run's assistant, by UUID or graph id; the server's statuses and messages."""
    if assistant_id_from(value) is None:
        raise Invalid(
            f"Invalid assistant: '{value}'. Must be either:\n- A valid assistant UUID, or\n"
            f"- One of the registered graphs: {', '.join(graphs.graph_ids())}"
        )
    try:
        return assistant_resolve(value)
    except AssistantNotFound as exc:
        raise NotFound(NOT_FOUND) from exc


def _run_metadata(assistant: Assistant, thread: Thread, data: dict) -> dict:
    """assistant, thread, config and request metadata merged, as the server records them."""
    return {
        **assistant.metadata,
        **thread.metadata,
        **((data.get("config") or {}).get("metadata") or {}),
        **(data.get("metadata") or {}),
        "assistant_id": str(assistant.assistant_id),
    }


def webhook_require_valid(url: Any) -> None:
    """422 for a `webhook` that can never be delivered (runs.webhooks.guard.url_problem).
    None: no webhook. Whether its address may be reached is decided at send time."""
    if url is not None:
        problem = url_problem(url)
        if problem:
            raise Invalid(problem)


def run_start(
    *, thread_id: str | None, data: dict[str, Any], body: dict[str, Any], stream: bool = False
) -> Run:
    """Start a run as the API asks: on thread `thread_id`, or, without one, on a
    new stateless thread (deleted after the run unless `on_completion` is
    "keep"). `data`: the validated request; `body`: the request's JSON as sent,
    whose keys about what the run executes become its kwargs. `stream`: created
    by a stream endpoint, so its worker records what the graph streams.

    The thread (stateless, or `if_not_exists=create`) and the run are created in
    one transaction, so a refused run leaves nothing behind."""
    config_and_context(data.get("config"), data.get("context"))  # both given: 400
    webhook_require_valid(data.get("webhook"))
    kwargs = {k: v for k, v in body.items() if k not in NOT_KWARGS and v is not None}
    # Custom auth: threads.create_run decides, on the thread; its handler may
    # change the run's metadata and kwargs.
    value: dict[str, Any] = {
        "thread_id": parse_uuid(thread_id) if thread_id is not None else None,
        "assistant_id": assistant_id_from(data["assistant_id"]),
        "run_id": None,
        "status": "pending",
        "metadata": dict(data.get("metadata") or {}),
        "prevent_insert_if_inflight": data.get("multitask_strategy") == "reject",
        "multitask_strategy": data.get("multitask_strategy") or "enqueue",
        "if_not_exists": data.get("if_not_exists") or "reject",
        "after_seconds": data.get("after_seconds") or 0,
        "kwargs": kwargs,
    }
    thread_filter = custom_auth.authorize("threads", "create_run", value)
    data = {**data, "metadata": value.get("metadata")}
    kwargs = custom_auth.with_user_configurable(
        dict(value.get("kwargs") or {}), custom_auth.current_user()
    )
    with transaction.atomic(savepoint=False):  # nested (a batch, a stream's hold): as one
        assistant = run_assistant(data["assistant_id"])
        on_completion = None
        if thread_id is None:
            thread = thread_create(
                metadata={
                    **((data.get("config") or {}).get("metadata") or {}),
                    **(data.get("metadata") or {}),
                }
            )
            on_completion = data.get("on_completion") or "delete"
        else:
            if data.get("if_not_exists") == "create":
                thread_create(thread_id=thread_id, if_exists="do_nothing")
            try:
                thread = thread_get_or_404(thread_id, action=None, auth_filter=thread_filter)
            except ThreadNotFound as exc:
                raise NotFound(NOT_FOUND) from exc
        delay = float(value.get("after_seconds") or 0)
        run = run_create(
            thread=thread,
            assistant=assistant,
            kwargs=kwargs,
            metadata=_run_metadata(assistant, thread, data),
            multitask_strategy=data.get("multitask_strategy"),
            on_completion=on_completion,
            streamed=stream or bool(data.get("stream_resumable")),
            not_before=db_now() + timedelta(seconds=delay) if delay > 0 else None,
        )
        if 0 < delay <= DELAYED_WAKE_MAX:
            wakeups.wake_thread_later_after_commit(thread.thread_id, delay)
        return run


@transaction.atomic
def run_delete(*, run: Run) -> None:
    run = locks.lock_existing_run(run.pk)
    if run.status == Run.Status.RUNNING:
        raise Conflict(f"Run {run.run_id} is running; cancel it before deleting it")
    Run.objects.filter(pk=run.pk).delete()


def pending_cap() -> int:
    return settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD


NO_RUNS_TO_CANCEL = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, "
    "and the runs haven't been deleted or completed."
)


def runs_cancel_many(
    *,
    thread_id: uuid.UUID | None = None,
    run_ids: list[uuid.UUID] | None = None,
    status: str | None = None,
    action: str = "interrupt",
) -> int:
    """`POST /runs/cancel`: cancel the unfinished runs `run_ids` of thread
    `thread_id`, or every run in `status` ("pending", "running" or "all").
    Each run is cancelled as `runs.lifecycle.run_cancel` does (its own lock;
    one that finishes meanwhile is left alone). NotFound when none matched
    by ids; returns how many were cancelled. With custom auth, a cancel is
    threads.update of each run's thread: only runs on threads its filter lets
    through are cancelled (a hidden thread is not found)."""
    thread_filter = custom_auth.authorize(
        "threads", "update", {"thread_id": thread_id, "metadata": {}, "action": action}
    )
    if status is not None:
        statuses = list(ACTIVE) if status == "all" else [status]
        runs = Run.objects.filter(status__in=statuses).filter(
            custom_auth.filter_q(thread_filter, "thread__metadata")
        )
    else:
        thread_get_or_404(thread_id, action=None, auth_filter=thread_filter)
        runs = Run.objects.filter(thread_id=thread_id, run_id__in=run_ids or [], status__in=ACTIVE)
    ids = list(runs.order_by("created_at").values_list("pk", flat=True))
    if not ids and status is None:
        raise NotFound(NO_RUNS_TO_CANCEL)
    cancelled = 0
    for pk in ids:
        try:
            with transaction.atomic():
                run_cancel(run=Run(pk=pk), action=action)
            cancelled += 1
        except Run.DoesNotExist:
            continue  # deleted meanwhile (with its thread)
    return cancelled


def runs_start_batch(payloads: list[dict[str, Any]]) -> list[Run]:
    """`POST /runs/batch`: stateless runs, each as `run_start` makes one, all
    in one transaction: one refused payload leaves none behind."""
    with transaction.atomic():
        return [
            run_start(thread_id=None, data=payload["data"], body=payload["body"])
            for payload in payloads
        ]
