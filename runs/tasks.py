"""Celery tasks of runs. They take ids and are safe to run twice; each calls a
service. Their messages are published by runs.wakeups (by task name)."""

from celery import shared_task
from celery.worker import state as worker_state
from django.conf import settings
from django.db import InterfaceError, OperationalError

from runs import executor, leases, lifecycle, retention, wakeups
from runs.webhooks import delivery


@shared_task(
    name="runs.drain",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def drain(thread_id: str | None = None) -> int:
    """Execute pending runs until none is ready: first the given thread's,
    oldest first, then any thread's.

    A wake-up, not a command: runs are claimed (pending → running under the
    thread's row lock), so a duplicate or redelivered message claims nothing
    and returns. Returns how many runs it executed."""
    done = 0
    # The stateless threads of the runs it finishes are deleted in batches:
    # one message a second, not one per run.
    with wakeups.thread_deletions_batched():
        while True:
            if worker_state.should_stop or worker_state.should_terminate:
                # Warm shutdown: claim nothing more; another worker takes the rest.
                wakeups.wake_another()
                return done
            run = lifecycle.run_claim_next(thread_id=thread_id) if thread_id else None
            if run is None:
                run = lifecycle.run_claim_ready()
            if run is None:
                return done
            executor.execute(run)
            done += 1


@shared_task(
    name="runs.delete_stateless_thread",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=10,
)
def delete_stateless_thread(*thread_ids: str) -> None:
    """Delete finished stateless runs' threads (on_completion="delete"), each
    once idle. Idempotent; a message names one thread or a worker's batch."""
    lifecycle.threads_delete_when_idle(thread_ids=[str(t) for t in thread_ids])


@shared_task(
    name="runs.reap",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def reap() -> dict:
    """Periodic (CRONSVC_REAP_INTERVAL): running runs whose lease expired go back
    to pending with a wake-up, or end as error once their attempts are spent.
    Claims rows with SKIP LOCKED; two passes at once split the work."""
    return leases.runs_reap()


@shared_task(
    name="runs.reconcile",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def reconcile() -> dict:
    """Periodic (CRONSVC_RECONCILE_INTERVAL): wake workers for pending runs
    ready longer than CRONSVC_RECONCILE_AFTER (their message was lost),
    re-enqueue stalled webhook deliveries, and delete stateless runs' threads
    whose deletion message was lost. Wake-ups only claim, so a spare one is
    harmless; a deletion claims the thread row."""
    return {**leases.runs_reconcile(), "threads": leases.stateless_threads_reconcile()}


@shared_task(
    name="runs.prune",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def prune() -> dict:
    """Periodic (CRONSVC_PRUNE_INTERVAL): delete finished runs and ticks older
    than CRONSVC_RETENTION_DAYS and checkpoints beyond the newest
    CRONSVC_CHECKPOINTS_KEEP per thread, in bounded batches."""
    return retention.prune()


@shared_task(
    name="runs.sweep_ttl",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def sweep_ttl() -> dict:
    """Periodic (CRONSVC_THREAD_SWEEP_INTERVAL, or langgraph.json's
    checkpointer.ttl.sweep_interval_minutes): threads whose TTL expired."""
    return retention.sweep_expired_threads()


@shared_task(
    bind=True,
    name="runs.deliver_webhook",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=10,
)
def deliver_webhook(self, run_id: str) -> str | None:
    """POST a finished run to its webhook (runs.webhooks.delivery). Each attempt is
    claimed and recorded on the run; a 5xx, 408, 429 or network error is
    retried with exponential backoff up to CRONSVC_WEBHOOK_MAX_ATTEMPTS
    attempts; a refused target is recorded and not retried."""
    attempts = delivery.attempts_made(run_id)
    if attempts is None:
        return None
    final = attempts + 1 >= settings.CRONSVC_WEBHOOK_MAX_ATTEMPTS
    outcome = delivery.deliver(run_id, final=final)
    if outcome is None:
        return None
    if outcome.retry:
        countdown = settings.CRONSVC_WEBHOOK_BACKOFF * 2**attempts
        raise self.retry(countdown=countdown)
    return outcome.status
