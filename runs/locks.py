"""Row locks of threads and runs, taken in the caller's transaction.

THE lock order: a thread's row, then its runs' rows. Whatever writes a run and
its thread under locks takes them in that order (run_create, run_cancel's
interrupt/rollback of active runs, the claims), so two writers of one thread
queue on the thread row instead of deadlocking.

Where a run row is locked first, the thread row is only written with a plain
UPDATE afterwards (a finish settles the thread's status), or taken with SKIP
LOCKED (a claim scan skips a thread another claimer holds), so neither waits
on a thread row while holding a run row another writer needs in that order.

A cron's row comes before both, as beat takes them (it claims due crons,
then writes their runs): a finish of a cron's run locks its cron first
(runs.lifecycle.run_finish: retry policy, consecutive failures). The
reaper's and a cancel's finish update the cron last, after the run's row.
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from cronsvc import statements
from runs.models import Run
from threads.models import Thread


def lock_thread(thread_id: UUID | str, *, skip_locked: bool = False) -> bool:
    """Lock a thread's row without reading its values. False when it does not
    exist, or, with skip_locked, another transaction holds it."""
    return (
        Thread.objects.select_for_update(skip_locked=skip_locked)
        .filter(pk=thread_id)
        .values_list("pk", flat=True)
        .first()
        is not None
    )


def lock_thread_row(thread_id: UUID | str) -> Thread | None:
    """Lock a thread's row and read it (None: it does not exist)."""
    return statements.first(
        "lock-thread", lambda pk: Thread.objects.select_for_update().filter(pk=pk), thread_id
    )


def lock_existing_thread(thread_id: UUID | str) -> Thread:
    """Lock a thread's row and read it; raises Thread.DoesNotExist."""
    thread = lock_thread_row(thread_id)
    if thread is None:
        raise Thread.DoesNotExist("Thread matching query does not exist.")
    return thread


def lock_run(run_id: UUID | str) -> Run | None:
    """Lock a run's row and read it (None: it does not exist)."""
    return statements.first(
        "lock-run", lambda pk: Run.objects.select_for_update().filter(pk=pk), run_id
    )


def lock_existing_run(run_id: UUID | str) -> Run:
    """Lock a run's row and read it; raises Run.DoesNotExist."""
    run = lock_run(run_id)
    if run is None:
        raise Run.DoesNotExist("Run matching query does not exist.")
    return run


def lock_runs(
    runs: QuerySet[Run], *, skip_locked: bool = False, of: tuple[str, ...] = ()
) -> QuerySet[Run]:
    """`runs` locked as they are read; with skip_locked, rows another
    transaction holds are left out; `of=("self",)`: only the run rows."""
    return runs.select_for_update(skip_locked=skip_locked, of=of)
