"""Celery tasks of runs. They take ids and are safe to run twice."""

from celery import shared_task
from celery.worker import state as worker_state
from django.db import InterfaceError, OperationalError

from runs import executor, services


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
    while True:
        if worker_state.should_stop or worker_state.should_terminate:
            # Warm shutdown: claim nothing more; another worker takes the rest.
            drain.delay()
            return done
        run = services.run_claim_next(thread_id=thread_id) if thread_id else None
        if run is None:
            run = services.run_claim_ready()
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
def delete_stateless_thread(thread_id: str) -> None:
    """Delete a finished stateless run's thread (on_completion="delete"). Idempotent."""
    services.thread_delete_when_idle(thread_id=thread_id)
