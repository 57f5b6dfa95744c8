"""The one owner of a run's state changes after it was created (runs.services
creates runs, for the API and for crons.ticking).

    run_create ─> pending ─(run_claim_next / run_claim_ready)─> running
    pending ─(run_cancel, interrupt)─> interrupted
    pending ─(run_cancel, rollback)──> deleted
    running ─(run_finish)────────────> success | error | timeout | interrupted
    running ─(run_finish: error/timeout, retry_policy attempts left)─> pending (not_before)
    running ─(run_requeue: lease expired, attempts left)─> pending
    running ─(reaper: lease expired, attempts spent; run_finish_locked)─> error
    running ─(run_cancel: flagged; the worker stops between steps)─>
              run_finish ─> interrupted,  or for a rollback  run_rolled_back ─> deleted

- Claim: pending → running under the thread's row lock, one running run per
  thread, each thread's runs in creation order, none before its
  `scheduled_at` or its `not_before` (a jittered cron tick's, or a retry's
  backoff); the claim takes the run's lease and counts the attempt.
- Lease renew (`run_lease_renew`): only the attempt holding the run extends
  its lease; the reaper (runs.leases) `run_requeue`s a run whose lease
  expired, or finishes it as `error` once its attempts are spent.
- Finish (`run_finish`, `run_finish_locked`): once, by the attempt holding
  it; settles the thread's status; after commit its webhook is delivered and
  a stateless run's thread deleted (runs.wakeups). A cron's run that failed
  with attempts left in its cron's retry_policy goes back to pending instead
  (`run_retry_locked`); a cron's run that finishes updates its cron
  (`cron_run_ended`: last run, consecutive failures, the pause).
- Cancel: a pending run ends at once (interrupted, or deleted by a rollback);
  a running one is flagged (`cancel_action`) for its worker.
- Rollback of a running run: the executor undoes its checkpoints, then
  `run_rolled_back` deletes it and gives the thread its earlier values.
- A thread's status follows its runs (`thread_settle`): busy while one is
  active, else from the last one.

Locks: runs.locks (a thread's row, then its runs' rows).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone

from crons.mirror import mirror_sync
from crons.models import Cron
from crons.retry import retry_backoff, retry_policy_of
from cronsvc import metrics
from cronsvc.dbclock import db_now
from cronsvc.models import Assistant
from runs import locks, wakeups
from runs.models import Run, ThreadStream
from threads.models import Thread
from threads.services import (
    thread_delete,
    thread_delete_if_idle_postgres,
    threads_delete_if_idle_postgres,
)

log = logging.getLogger(__name__)

ACTIVE = (Run.Status.PENDING, Run.Status.RUNNING)

# A run prepared ahead of its cron's instant is not ready before it, nor a
# run before its `not_before` (a jittered cron tick's, or a retry's backoff;
# the database's clock decides, as it does for beat; a test may give its own). A buffered
# cron tick's run is not ready while the run it waits for (`after_run_id`) is
# pending or running; once that run ended (or is gone) it is, for good: a
# finished run never becomes active again.


def ready_q(now: datetime | None = None) -> Q:
    """The runs a claim may take (pending ones among them), at `now` (None:
    the database's clock)."""
    clock: Any = Now() if now is None else Value(now, output_field=DateTimeField())
    not_waiting = Q(after_run_id__isnull=True) | Q(
        ~Exists(Run.objects.filter(pk=OuterRef("after_run_id"), status__in=ACTIVE))
    )
    return (
        (Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=clock))
        & (Q(not_before__isnull=True) | Q(not_before__lte=clock))
        & not_waiting
    )


READY = ready_q()
# Run statuses that are a failure: its cron's retry_policy may attempt it again.
FAILED = (Run.Status.ERROR, Run.Status.TIMEOUT)

KEEP_VALUES = object()

Id = UUID | str  # a run's or a thread's id, as a UUID or its text


def lease_expiry() -> ExpressionWrapper[Any]:
    """When a lease taken or renewed now expires, on the database's clock."""
    return ExpressionWrapper(
        Now() + timedelta(seconds=settings.CRONSVC_RUN_LEASE_SECONDS),
        output_field=DateTimeField(),
    )


# --- claim ------------------------------------------------------------------


def _claim(run: Run) -> Run | None:
    """pending → running for `run`, under its thread's row lock (caller's transaction).

    The claim takes the run's lease (runs.leases) and counts the attempt."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run.pk, status=Run.Status.PENDING).update(
        status=Run.Status.RUNNING,
        started_at=now,
        updated_at=now,
        attempts=run.attempts + 1,
        lease_expires_at=lease_expiry(),
    )
    if not claimed:
        return None
    run.refresh_from_db()
    metrics.run_started(run)
    return run


def _thread_head(thread_id: Id, now: datetime | None = None) -> tuple[Any, str, bool] | None:
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
            ready=ExpressionWrapper(ready_q(now), output_field=BooleanField()),
        )
        .order_by("running_first", "created_at", "run_id")
        .values_list("run_id", "status", "ready")
        .first()
    )


def run_claim_next(*, thread_id: Id, now: datetime | None = None) -> Run | None:
    """Claim the oldest pending run of a thread, unless one is running there.

    The thread row lock serialises claimers; the status compare-and-set makes a
    second claim of the same run impossible. `now`: the clock that decides
    whether it is due (None: the database's)."""
    postgres = connection.vendor == "postgresql"
    with transaction.atomic():
        if postgres:
            # Claims the head when it is pending and ready, as below.
            return _claim_head_postgres(thread_id, candidate=None, skip_locked=False, now=now)[1]
        head = _thread_head(thread_id, now) if locks.lock_thread(thread_id) else None
        if head is None or head[1] == Run.Status.RUNNING or not head[2]:
            # Nothing pending, one running, or the oldest waits (its instant,
            # its retry backoff): the thread's later runs wait behind it.
            return None
        return _claim(Run.objects.get(pk=head[0]))


CLAIM_SCAN = 20


def run_claim_ready(now: datetime | None = None) -> Run | None:
    """Claim the oldest pending run whose thread has nothing running, any thread.

    Rows other workers are claiming are skipped (SKIP LOCKED), so many workers
    drain a burst of runs side by side. `now` as for run_claim_next."""
    if connection.vendor == "postgresql":
        return run_claim_ready_postgres(now)
    skipped_threads: set[UUID] = set()
    for _ in range(50):
        with transaction.atomic():
            candidates = list(
                locks.lock_runs(
                    Run.objects.filter(ready_q(now), status=Run.Status.PENDING),
                    skip_locked=True,
                    of=("self",),
                )
                .exclude(thread_id__in=skipped_threads)
                .order_by("created_at", "run_id")[:CLAIM_SCAN]
            )
            if not candidates:
                return None
            for run in candidates:
                if run.thread_id in skipped_threads:
                    continue
                head = (
                    _thread_head(run.thread_id, now)
                    if locks.lock_thread(run.thread_id, skip_locked=True)
                    else None
                )
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


# The claim on PostgreSQL: the same steps in as few statements, without the
# ORM's query building and without reading rows it does not use (a worker's
# CPU per run is mostly these statements; bench/worker_cpu.py).

# READY in SQL, for the run whose row is `{r}`; `%(clock)s`: a test's clock,
# or NULL for the database's.
_CLOCK_SQL = "COALESCE(%(clock)s::timestamptz, STATEMENT_TIMESTAMP())"
_DUE_SQL = (
    "({r}scheduled_at IS NULL OR {r}scheduled_at <= {clock}) "
    "AND ({r}not_before IS NULL OR {r}not_before <= {clock})"
)
_NOT_WAITING_SQL = (
    "({r}after_run_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs_run w "
    "WHERE w.run_id = {r}after_run_id AND w.status IN ('pending', 'running')))"
)

_CANDIDATES_SQL = """
SELECT run_id, thread_id FROM runs_run
WHERE status = 'pending' AND {due}
  AND {not_waiting}
  AND NOT (thread_id = ANY(%(skipped)s::uuid[]))
ORDER BY created_at, run_id
LIMIT %(scan)s
FOR UPDATE SKIP LOCKED
""".replace("{not_waiting}", _NOT_WAITING_SQL.format(r="runs_run.")).replace(
    "{due}", _DUE_SQL.format(r="runs_run.", clock=_CLOCK_SQL)
)

# The claim in one statement: the thread's row locked (waiting, or SKIP
# LOCKED) and its head read, as locks.lock_thread and _thread_head do; the
# head claimed (_claim's compare-and-set, taking the lease) when it is
# pending and either the candidate the caller found or ready; its fire lag
# counted (metrics.run_started); and what the executor reads next: whether a
# thread stream is open on the thread and the run's assistant. Locks in the
# usual order: thread, run, counter rows. One row always (the head's columns
# NULL when the thread is gone, held by another claimer or has nothing
# active; the run's when nothing was claimed).
_CLAIM_SQL = """
WITH head AS (
    SELECT r.run_id, r.status, {due} AND {not_waiting} AS ready
    FROM (SELECT thread_id FROM threads_thread WHERE thread_id = %(thread_id)s
          FOR UPDATE{skip}) t
    JOIN runs_run r ON r.thread_id = t.thread_id
    WHERE r.status IN ('pending', 'running')
    ORDER BY (r.status = 'running') DESC, r.created_at, r.run_id
    LIMIT 1
), claimed AS (
    UPDATE runs_run
    SET status = 'running', started_at = %(now)s, updated_at = %(now)s,
        attempts = runs_run.attempts + 1,
        lease_expires_at = STATEMENT_TIMESTAMP() + make_interval(secs => %(lease)s)
    FROM head
    WHERE runs_run.run_id = head.run_id AND head.status = 'pending'
      AND (head.run_id = %(candidate)s::uuid OR head.ready)
      AND runs_run.status = 'pending'
    RETURNING runs_run.*
), counted AS ({counted})
SELECT head.run_id, head.status, head.ready,
    EXISTS (SELECT 1 FROM runs_threadstream s
            WHERE s.thread_id = c.thread_id AND s.expires_at > %(now)s),
    {run_columns}, {assistant_columns}
FROM (SELECT 1) one
LEFT JOIN head ON true
LEFT JOIN claimed c ON true
LEFT JOIN cronsvc_assistant a ON a.assistant_id = c.assistant_id
"""


def _columns(model: Any, alias: str) -> str:
    return ", ".join(f"{alias}.{f.column}" for f in model._meta.concrete_fields)


def _from_row(model: Any, row: Any) -> Any:
    """A model instance from its concrete columns (in _columns's order), as
    the ORM converts them (JSON text decoded); None for a row of NULLs."""
    if row[0] is None:
        return None
    fields = model._meta.concrete_fields
    values = [
        f.from_db_value(v, None, connection) if v is not None and hasattr(f, "from_db_value") else v
        for f, v in zip(fields, row, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], values)


# The first claim of run_claim_ready in one statement, on its own (autocommit:
# no BEGIN and COMMIT round trips): the oldest ready candidate no other
# claimer holds (_CANDIDATES_SQL's first row, locked SKIP LOCKED) is
# _CLAIM_SQL's thread and candidate; the candidate's id comes first in the
# row. A candidate it could not claim (its thread busy, held, or its head
# not ready) leaves the rest to run_claim_ready_postgres's scan.
_FIRST_CANDIDATE_SQL = (
    "WITH cand AS MATERIALIZED ("
    + _CANDIDATES_SQL.replace("  AND NOT (thread_id = ANY(%(skipped)s::uuid[]))\n", "")
    .replace("%(scan)s", "1")
    .strip()
    + "), head AS ("
)

_CLAIM_STATEMENTS: dict[tuple[bool, bool], str] = {}


def _claim_sql(skip_locked: bool, first_candidate: bool = False) -> str:
    sql = _CLAIM_STATEMENTS.get((skip_locked, first_candidate))
    if sql is None:
        sql = (
            _CLAIM_SQL.replace("{not_waiting}", _NOT_WAITING_SQL.format(r="r."))
            .replace("{due}", _DUE_SQL.format(r="r.", clock=_CLOCK_SQL))
            .replace("{skip}", " SKIP LOCKED" if skip_locked else "")
            .replace("{counted}", metrics.run_started_sql("claimed"))
            .replace("{run_columns}", _columns(Run, "c"))
            .replace("{assistant_columns}", _columns(Assistant, "a"))
        )
        if first_candidate:
            sql = (
                sql.replace("WITH head AS (", _FIRST_CANDIDATE_SQL)
                .replace("%(thread_id)s", "(SELECT thread_id FROM cand)")
                .replace("%(candidate)s::uuid", "(SELECT run_id FROM cand)")
                .replace("SELECT head.run_id,", "SELECT (SELECT run_id FROM cand), head.run_id,")
            )
        _CLAIM_STATEMENTS[(skip_locked, first_candidate)] = sql
    return sql


def _claim_head_postgres(
    thread_id: Id, *, candidate: Any, skip_locked: bool, now: datetime | None
) -> tuple[tuple[Any, str, bool] | None, Run | None]:
    """((run_id, status, ready) of the thread's head or None, the run it
    claimed or None), in one statement (_CLAIM_SQL). The claimed run comes
    with its assistant (None: deleted) and `thread_watched`."""
    params = {
        "thread_id": str(thread_id),
        "candidate": None if candidate is None else str(candidate),
        "clock": now,
        "now": timezone.now(),
        "lease": float(settings.CRONSVC_RUN_LEASE_SECONDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(skip_locked), params)
        row = cursor.fetchone()
    return _claimed_from_row(row)


def _claim_first_candidate_postgres(now: datetime | None) -> tuple[Any, Run | None]:
    """(the oldest ready candidate's run id, or None when there is none, the
    run claimed or None), in one statement on its own (_FIRST_CANDIDATE_SQL)."""
    params = {
        "clock": now,
        "now": timezone.now(),
        "lease": float(settings.CRONSVC_RUN_LEASE_SECONDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(True, first_candidate=True), params)
        row = cursor.fetchone()
    return row[0], _claimed_from_row(row[1:])[1]


def _claimed_from_row(row: Any) -> tuple[tuple[Any, str, bool] | None, Run | None]:
    head = (row[0], row[1], row[2]) if row[0] is not None else None
    n_run = len(Run._meta.concrete_fields)
    run = _from_row(Run, row[4 : 4 + n_run])
    if run is not None:
        assistant = _from_row(Assistant, row[4 + n_run :])
        if assistant is not None or run.assistant_id is None:
            run.assistant = assistant
        run.thread_watched = bool(row[3])
    return head, run


def run_claim_ready_postgres(now: datetime | None = None) -> Run | None:
    """run_claim_ready on PostgreSQL (same rules, same locks, same order).

    Its first try is one statement on its own (a burst of runs on their own
    threads, as a cron's, is claimed that way: one round trip, not the
    transaction's four); a first candidate it could not claim leaves the
    rest to the scan below, in a transaction."""
    candidate, run = _claim_first_candidate_postgres(now)
    if run is not None or candidate is None:
        return run
    skipped_threads: set[str] = set()
    for _ in range(50):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    _CANDIDATES_SQL,
                    {"skipped": list(skipped_threads), "scan": CLAIM_SCAN, "clock": now},
                )
                candidates = cursor.fetchall()
            if not candidates:
                return None
            for run_id, thread_id in candidates:
                thread = str(thread_id)
                if thread in skipped_threads:
                    continue
                head, run = _claim_head_postgres(
                    thread, candidate=run_id, skip_locked=True, now=now
                )
                if run is not None:
                    return run  # the thread's head: keeps each thread's runs in order
                if head is None or head[1] == Run.Status.RUNNING:
                    skipped_threads.add(thread)
                    continue
                if head[0] != run_id and not head[2]:
                    skipped_threads.add(thread)
                    continue
                return None  # the head was claimable, yet not claimed: as _claim's None
    return None


# --- lease ------------------------------------------------------------------


def run_lease_renew(*, run_id: Id, attempt: int) -> bool:
    """Extend the lease of `run_id`'s attempt `attempt`. False when the run is
    no longer that attempt's (reaped, re-claimed, finished or deleted): its
    worker must stop."""
    return bool(
        Run.objects.filter(pk=run_id, status=Run.Status.RUNNING, attempts=attempt).update(
            lease_expires_at=lease_expiry()
        )
    )


# Many leases renewed at once (runs.leases.LeaseRenewer), each only for the
# attempt holding its run. Run rows another transaction holds (a finish, a
# cancel, the reaper) are skipped, not waited for: no lock-order question
# with them, and the renewer tries those again at its next beat.
_RENEW_SQL = """
WITH v AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS v(run_id, attempt)
), locked AS (
    SELECT r.run_id, r.status, r.attempts FROM runs_run r
    WHERE r.run_id IN (SELECT run_id FROM v)
    FOR UPDATE OF r SKIP LOCKED
), renewed AS (
    UPDATE runs_run r
    SET lease_expires_at = STATEMENT_TIMESTAMP() + make_interval(secs => %(lease)s)
    FROM locked l JOIN v ON v.run_id = l.run_id
    WHERE r.run_id = l.run_id AND l.status = 'running' AND l.attempts = v.attempt
    RETURNING r.run_id
)
SELECT v.run_id::text,
    EXISTS (SELECT 1 FROM renewed n WHERE n.run_id = v.run_id),
    EXISTS (SELECT 1 FROM locked l WHERE l.run_id = v.run_id)
        OR NOT EXISTS (SELECT 1 FROM runs_run r WHERE r.run_id = v.run_id)
FROM v
"""


def run_leases_renew(leases: list[tuple[Id, int]]) -> tuple[set[str], set[str]]:
    """Extend the leases of many (run_id, attempt) at once, as run_lease_renew
    does one. Returns (renewed, lost) run ids as text; a run in neither was
    held by another transaction and is to be tried again."""
    if not leases:
        return set(), set()
    if connection.vendor != "postgresql":
        renewed: set[str] = set()
        lost: set[str] = set()
        for run_id, attempt in leases:
            ok = run_lease_renew(run_id=run_id, attempt=attempt)
            (renewed if ok else lost).add(str(run_id))
        return renewed, lost
    params: dict[str, Any] = {
        "ids": [str(run_id) for run_id, _ in leases],
        "attempts": [attempt for _, attempt in leases],
        "lease": float(settings.CRONSVC_RUN_LEASE_SECONDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_RENEW_SQL, params)
        rows = cursor.fetchall()
    return (
        {run_id for run_id, ok, _ in rows if ok},
        {run_id for run_id, ok, decided in rows if decided and not ok},
    )


def run_requeue(run: Run) -> bool:
    """running → pending for a run whose worker was lost (its lease expired),
    locked by the caller's transaction; it keeps its attempt count. False when
    the run is no longer that attempt's. The caller wakes workers after commit."""
    back = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING, attempts=run.attempts).update(
        status=Run.Status.PENDING,
        started_at=None,
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    if back:
        thread_settle(run.thread_id)
    return bool(back)


# --- the thread's status ----------------------------------------------------


def _settled_status(thread_id: Id) -> str:
    """A thread's status from its runs: busy while any is active, else from the
    last one. One query."""
    last = (
        Run.objects.filter(thread_id=thread_id)
        .annotate(active=Exists(Run.objects.filter(thread_id=thread_id, status__in=ACTIVE)))
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


# _settled_status and the thread's update in one statement (PostgreSQL).
_SETTLE_SQL = """
UPDATE threads_thread SET updated_at = %(now)s{values}, status = COALESCE((
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM runs_run a
                     WHERE a.thread_id = %(thread_id)s AND a.status IN ('pending', 'running'))
            THEN 'busy'
        WHEN l.status = 'error' THEN 'error'
        WHEN l.status = 'interrupted' AND l.cancel_action IS NULL THEN 'interrupted'
        ELSE 'idle' END
    FROM runs_run l WHERE l.thread_id = %(thread_id)s ORDER BY l.created_at DESC LIMIT 1
), 'idle')
WHERE thread_id = %(thread_id)s
"""


def thread_settle(thread_id: Id, **fields: Any) -> None:
    """Set the thread's status from its runs (and `fields`), in one update."""
    if connection.vendor == "postgresql" and set(fields) <= {"values"}:
        params: dict[str, Any] = {"now": timezone.now(), "thread_id": str(thread_id)}
        if "values" in fields:
            params["values"] = _json(fields["values"])
        with connection.cursor() as cursor:
            cursor.execute(
                _SETTLE_SQL.format(values=", values = %(values)s" if "values" in fields else ""),
                params,
            )
        return
    Thread.objects.filter(pk=thread_id).update(
        status=_settled_status(thread_id), updated_at=timezone.now(), **fields
    )


def _json(value: Any) -> str | None:
    """A JSONField's value as PostgreSQL takes it (None: SQL NULL, as the ORM stores it)."""
    return None if value is None else json.dumps(value)


# --- finish -----------------------------------------------------------------


def run_finish(
    *,
    run_id: Id,
    status: str,
    output: Any = None,
    error: str | None = None,
    values: Any = None,
    attempt: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Record a run's end. Idempotent: only a running run is finished, once.

    With `attempt`, only that attempt may finish it: a worker whose lease
    expired (the run was reaped and claimed again) cannot end the run.
    Called after the graph's checkpoint is written, so the run's status is the
    last thing to change.

    A cron's run ending in `error` or `timeout` with attempts left in its
    cron's `retry_policy` is not finished: it goes back to pending, not
    before its backoff (`run_retry_locked`), keeping its place on its thread.
    A cron's run that does finish updates its cron (`cron_run_ended`).
    `now`: the clock of the backoff and of the cron's `last_run_date` (None:
    the database's; the finish time is this process's)."""
    if connection.vendor == "postgresql" and status not in FAILED:
        # No retry to decide: the whole finish in one statement, which takes
        # the cron's row first as below. Atomic on its own (no BEGIN and
        # COMMIT round trips); its after-commit actions run once it committed
        # (or at the caller's commit, inside a transaction).
        return _run_finish_one_statement(
            run_id=run_id,
            status=status,
            output=output,
            error=error,
            values=values,
            attempt=attempt,
            cron_now=now,
        )
    with transaction.atomic():
        # The cron's row first (the order beat takes: cron, thread, runs).
        cron = _cron_of_run_locked(run_id)
        if (
            cron is not None
            and status in FAILED
            and run_retry_locked(
                run_id=run_id,
                retry_policy=cron[1],
                status=status,
                error=error,
                values=values,
                attempt=attempt,
                now=now,
            )
        ):
            return True
        if connection.vendor == "postgresql":
            return _run_finish_postgres(
                run_id=run_id,
                status=status,
                output=output,
                error=error,
                values=values,
                attempt=attempt,
                cron_id=cron[0] if cron is not None else None,
                cron_now=now,
            )
        run = locks.lock_run(run_id)
        if run is None or run.status != Run.Status.RUNNING:
            return False
        if attempt is not None and run.attempts != attempt:
            return False
        run_finish_locked(
            run,
            status=status,
            output=output,
            error=error,
            values=values,
            failure=status in FAILED,
            cron_now=now,
        )
    return True


# The cron of a run, its row locked, with its retry policy (no row: the run
# has no cron).
_RUN_CRON_SQL = """
SELECT c.cron_id, c.retry_policy FROM crons_cron c
JOIN runs_run r ON r.cron_id = c.cron_id
WHERE r.run_id = %s
FOR UPDATE OF c
"""


def _cron_of_run_locked(run_id: Id) -> tuple[Any, dict[str, Any] | None] | None:
    """(cron_id, retry_policy) of `run_id`'s cron, its row locked (caller's
    transaction); None for a run without a cron."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_RUN_CRON_SQL, [str(run_id)])
            row = cursor.fetchone()
        if row is None:
            return None
        policy = json.loads(row[1]) if isinstance(row[1], str) else row[1]
        return row[0], policy
    found = (
        Cron.objects.select_for_update(of=("self",))
        .filter(runs__pk=run_id)
        .values_list("cron_id", "retry_policy")
        .first()
    )
    return (found[0], found[1]) if found else None


def run_retry_locked(
    *,
    run_id: Id,
    retry_policy: dict[str, Any] | None,
    status: str,
    error: str | None,
    values: Any,
    attempt: int | None,
    now: datetime | None,
) -> bool:
    """running → pending for a cron's run whose attempt failed (`status`
    error or timeout) while its cron's `retry_policy` has attempts left (the
    caller holds the cron's row): the same run, on the same thread, claimed
    again once `not_before` (now + the backoff) has passed, and continued from
    its last checkpoint (runs.executor). It stays active meanwhile, so its
    thread's later runs wait behind it and its webhook, a stateless thread's
    deletion, join and wait wait for its last attempt. False (nothing
    written) when no attempt is left or the run is no longer that attempt's."""
    policy = retry_policy_of(retry_policy)
    running = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING)
    if attempt is not None:
        running = running.filter(attempts=attempt)
    run = locks.lock_runs(running).values_list("thread_id", "failure_attempts", "attempts").first()
    if run is None:
        return False
    thread_id, failures, attempts = run
    retry = failures + 1  # this failure's number, and the retry it asks for
    if retry >= policy["max_attempts"]:
        return False
    delay = retry_backoff(policy, retry)
    clock = now or db_now()
    retried = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING, attempts=attempts).update(
        status=Run.Status.PENDING,
        started_at=None,
        lease_expires_at=None,
        failure_attempts=F("failure_attempts") + 1,
        not_before=clock + timedelta(seconds=delay),
        error=error,
        updated_at=timezone.now(),
    )
    if not retried:
        return False
    log.warning(
        "run %s: attempt %s ended %s (failure %s of retry_policy.max_attempts %s); retried in %g s",
        run_id,
        attempts,
        status,
        retry,
        policy["max_attempts"],
        delay,
    )
    thread_settle(thread_id, values=values)
    wakeups.wake_thread_later_after_commit(thread_id, delay)
    return True


def cron_run_ended(*, cron_id: Any, run_id: Id, status: str, now: datetime | None) -> None:
    """A run of `cron_id` reached a final status (caller's transaction): the
    cron's last_run_date and last_run_final_status (the wire's
    last_run_status); a failure (error, timeout)
    counts one more consecutive failure, a success resets the count
    (interrupted leaves it). Counted by one F() update, under the row lock it
    takes: at `max_consecutive_failures` the cron disables itself with
    `paused_reason`. A cron with that policy has nothing prepared ahead (it is
    not batchable, crons.dispatch), so there is nothing to withdraw."""
    failed = status in FAILED
    count: Any = F("consecutive_failures") + 1 if failed else F("consecutive_failures")
    if status == Run.Status.SUCCESS:
        count = 0
    clock = now or timezone.now()
    crons = Cron.objects.filter(pk=cron_id)
    if not crons.update(
        last_run_date=clock, last_run_final_status=status, consecutive_failures=count
    ):
        return
    if not failed:
        return
    cron = (
        crons.filter(
            enabled=True,
            max_consecutive_failures__isnull=False,
            consecutive_failures__gte=F("max_consecutive_failures"),
        )
        .select_related("periodic_task")
        .first()
    )
    if cron is None:
        return
    cron.enabled = False
    cron.paused_reason = (
        f"max_consecutive_failures reached: {cron.consecutive_failures} run(s) in a row "
        f"failed (the last, run {run_id}: {status})"
    )
    crons.update(enabled=False, paused_reason=cron.paused_reason, updated_at=timezone.now())
    mirror_sync(cron)  # the mirror shows the cron disabled


# run_finish's compare-and-set (the row lock is the UPDATE's) with what
# run_finish_locked reads of the run.
_FINISH_SQL = """
UPDATE runs_run
SET status = %(status)s, output = %(output)s, error = %(error)s, finished_at = %(now)s,
    updated_at = %(now)s, lease_expires_at = NULL,
    failure_attempts = failure_attempts + %(failure)s,
    webhook_status = CASE WHEN COALESCE(kwargs ->> 'webhook', '') <> '' THEN 'pending' END
WHERE run_id = %(run_id)s AND status = 'running' AND (%(attempt)s::int IS NULL OR attempts = %(attempt)s::int)
RETURNING thread_id, on_completion, webhook_status IS NOT NULL,
    (SELECT w.thread_id FROM runs_run w
     WHERE w.after_run_id = runs_run.run_id AND w.status = 'pending' LIMIT 1)
"""


def _run_finish_postgres(
    *,
    run_id: Id,
    status: str,
    output: Any,
    error: str | None,
    values: Any,
    attempt: int | None,
    cron_id: Any,
    cron_now: datetime | None,
) -> bool:
    """run_finish on PostgreSQL (in its transaction): the same writes and
    after-commit actions, in two statements."""
    params = {
        "run_id": str(run_id),
        "status": status,
        "output": _json(output),
        "error": error,
        "now": timezone.now(),
        "attempt": attempt,
        "failure": 1 if status in FAILED else 0,
    }
    with connection.cursor() as cursor:
        cursor.execute(_FINISH_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return False
    thread_id, on_completion, webhook, waiter = row
    thread_settle(thread_id, values=values)
    if waiter is not None:  # a buffered cron tick's run waited for this one
        wakeups.wake_thread_after_commit(waiter)
    if cron_id is not None:
        cron_run_ended(cron_id=cron_id, run_id=run_id, status=status, now=cron_now)
    metrics.runs_finished(status)  # last: a counter row is the last lock taken
    if webhook:
        wakeups.deliver_webhook_after_commit(str(run_id))
    if on_completion == "delete":
        wakeups.delete_thread_after_commit(thread_id)
    return True


# run_finish of a run ending in a status that is no failure (no retry to
# decide), in one statement, its locks in the usual order: the run's cron
# row (the one-time filter of `fin`, before it touches the run), the run
# (compare-and-set on status and attempt), its thread (settled as
# thread_settle does, counting the run as finished: the statement's snapshot
# still sees it running), the cron's row again (cron_run_ended: no pause
# without a failure), then the counter row (runs_finished, after the others).
_FINISH_ONE_SQL = """
WITH cron AS (
    SELECT c.cron_id FROM crons_cron c JOIN runs_run r ON r.cron_id = c.cron_id
    WHERE r.run_id = %(run_id)s
    FOR UPDATE OF c
), fin AS (
    UPDATE runs_run
    SET status = %(status)s, output = %(output)s, error = %(error)s, finished_at = %(now)s,
        updated_at = %(now)s, lease_expires_at = NULL,
        webhook_status = CASE WHEN COALESCE(kwargs ->> 'webhook', '') <> '' THEN 'pending' END
    WHERE run_id = %(run_id)s AND status = 'running'
      AND (%(attempt)s::int IS NULL OR attempts = %(attempt)s::int)
      AND (SELECT count(*) FROM cron) >= 0
    RETURNING thread_id, on_completion, webhook_status IS NOT NULL AS webhook, cron_id,
        (SELECT w.thread_id FROM runs_run w
         WHERE w.after_run_id = runs_run.run_id AND w.status = 'pending' LIMIT 1) AS waiter
), settled AS (
    UPDATE threads_thread t SET updated_at = %(now)s, values = %(values)s, status = COALESCE((
        SELECT CASE
            WHEN EXISTS (SELECT 1 FROM runs_run a
                         WHERE a.thread_id = t.thread_id AND a.run_id <> %(run_id)s
                           AND a.status IN ('pending', 'running'))
                THEN 'busy'
            WHEN l.run_id = %(run_id)s AND %(status)s = 'interrupted'
                 AND l.cancel_action IS NULL THEN 'interrupted'
            WHEN l.run_id = %(run_id)s THEN 'idle'
            WHEN l.status = 'error' THEN 'error'
            WHEN l.status = 'interrupted' AND l.cancel_action IS NULL THEN 'interrupted'
            ELSE 'idle' END
        FROM runs_run l WHERE l.thread_id = t.thread_id ORDER BY l.created_at DESC LIMIT 1
    ), 'idle')
    FROM fin WHERE t.thread_id = fin.thread_id
    RETURNING 1
), cron_ended AS (
    UPDATE crons_cron
    SET last_run_date = %(cron_now)s, last_run_final_status = %(status)s,
        consecutive_failures = CASE WHEN %(status)s = 'success' THEN 0
                                    ELSE consecutive_failures END
    FROM fin WHERE crons_cron.cron_id = fin.cron_id
    RETURNING 1
), counted AS ({counted})
SELECT thread_id, on_completion, webhook, waiter FROM fin
"""
_FINISH_ONE_STATEMENTS: dict[str, str] = {}


def _run_finish_one_statement(
    *,
    run_id: Id,
    status: str,
    output: Any,
    error: str | None,
    values: Any,
    attempt: int | None,
    cron_now: datetime | None,
) -> bool:
    """run_finish on PostgreSQL for a status that is no failure (caller's
    transaction): _FINISH_ONE_SQL, then the after-commit actions."""
    sql = _FINISH_ONE_STATEMENTS.get(status)
    if sql is None:
        sql = _FINISH_ONE_SQL.replace(
            "{counted}", metrics.runs_finished_sql("fin", status, "settled", "cron_ended")
        )
        _FINISH_ONE_STATEMENTS[status] = sql
    now = timezone.now()
    params = {
        "run_id": str(run_id),
        "status": status,
        "output": _json(output),
        "error": error,
        "now": now,
        "cron_now": cron_now or now,
        "attempt": attempt,
        "values": _json(values),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    thread_id, on_completion, webhook, waiter = row
    if waiter is not None:  # a buffered cron tick's run waited for this one
        wakeups.wake_thread_after_commit(waiter)
    if webhook:
        wakeups.deliver_webhook_after_commit(str(run_id))
    if on_completion == "delete":
        wakeups.delete_thread_after_commit(thread_id)
    return True


def run_finish_locked(
    run: Run,
    *,
    status: str,
    output: Any,
    error: str | None,
    values: Any = KEEP_VALUES,
    failure: bool = False,
    cron_now: datetime | None = None,
) -> None:
    """End a run locked by the caller's transaction; after commit, delete a
    stateless run's thread and deliver its webhook. The thread's values are
    left as they are with KEEP_VALUES. `failure`: the attempt failed (counted
    in failure_attempts; a lost worker's is not). A cron's run updates its
    cron (`cron_run_ended`)."""
    now = timezone.now()
    webhook = (run.kwargs or {}).get("webhook")
    Run.objects.filter(pk=run.pk).update(
        status=status,
        output=output,
        error=error,
        finished_at=now,
        updated_at=now,
        lease_expires_at=None,
        failure_attempts=F("failure_attempts") + (1 if failure else 0),
        webhook_status=Run.WebhookStatus.PENDING if webhook else None,
    )
    thread_settle(run.thread_id, **({} if values is KEEP_VALUES else {"values": values}))
    if run.cron_id is not None:
        cron_run_ended(cron_id=run.cron_id, run_id=run.pk, status=status, now=cron_now)
    metrics.runs_finished(status)  # last: a counter row is the last lock taken
    if webhook:
        wakeups.deliver_webhook_after_commit(run.pk)
    if run.on_completion == "delete":
        wakeups.delete_thread_after_commit(run.thread_id)
    _wake_waiter(run.pk)


def _wake_waiter(run_id: Id) -> None:
    """After commit, wake a worker for the run waiting for `run_id` to end
    (a buffered cron tick's: `after_run_id`), if there is one. A lost wake-up
    is the reconciler's, as for any ready run."""
    waiter = (
        Run.objects.filter(after_run_id=run_id, status=Run.Status.PENDING)
        .values_list("thread_id", flat=True)
        .first()
    )
    if waiter is not None:
        wakeups.wake_thread_after_commit(waiter)


def run_rolled_back(*, run_id: Id, values: Any, attempt: int) -> bool:
    """A running run cancelled with `rollback` whose checkpoints the executor
    undid: delete it (no webhook: it no longer exists) and give its thread the
    values it had before it. Only the attempt that holds the run may do so."""
    with transaction.atomic():
        run = locks.lock_run(run_id)
        if run is None or run.status != Run.Status.RUNNING or run.attempts != attempt:
            return False
        run.delete()
        thread_settle(run.thread_id, values=values)
        if run.on_completion == "delete":
            wakeups.delete_thread_after_commit(run.thread_id)
        _wake_waiter(run_id)
    return True


# --- cancel -----------------------------------------------------------------


def run_request_cancel(run: Run, *, action: str) -> None:
    """Cancel `run`, locked (or its thread locked) by the caller's transaction.

    A pending run ends here: deleted by a rollback, else interrupted and
    finished like any other run (its webhook is sent; a stateless run's thread
    goes). A running one is flagged for its worker, which stops between steps."""
    if run.status == Run.Status.PENDING:
        if action == Run.MultitaskStrategy.ROLLBACK:
            run.delete()
            if run.on_completion == "delete":
                wakeups.delete_thread_after_commit(run.thread_id)
        else:
            Run.objects.filter(pk=run.pk).update(cancel_action=action)
            run_finish_locked(
                run, status=Run.Status.INTERRUPTED, output=None, error=None, values=KEEP_VALUES
            )
    elif run.status == Run.Status.RUNNING:
        Run.objects.filter(pk=run.pk).update(cancel_action=action, updated_at=timezone.now())


@transaction.atomic
def run_cancel(*, run: Run, action: str = "interrupt") -> None:
    run = locks.lock_existing_run(run.pk)
    if run.status in Run.FINISHED:
        return
    run_request_cancel(run, action=action)
    if run.status == Run.Status.PENDING:
        thread_settle(run.thread_id)


def run_cancel_requested(run_id: Id) -> str | None:
    """The cancel action asked of a running run (checked between graph steps)."""
    with connection.cursor() as cursor:  # checked at every step: no ORM query building
        cursor.execute(
            "SELECT cancel_action FROM runs_run WHERE run_id = %s",
            [Run._meta.pk.get_db_prep_value(run_id, connection)],
        )
        row = cursor.fetchone()
    return row[0] if row else None


# --- a stateless run's thread -----------------------------------------------


def thread_delete_after_stream(thread_id: Id) -> None:
    """A stream on a stateless run's thread ended: if the run has ended too,
    delete the thread as its end would have (after the grace), since that
    deletion found the stream open and left the thread. In the process's
    batch of deletions: streams of a burst of runs end together (500 at once,
    a message each, were ~2% of an API process's time)."""
    if (
        Run.objects.filter(thread_id=thread_id, on_completion="delete")
        .exclude(status__in=ACTIVE)
        .exists()
    ):
        wakeups.delete_thread_after_commit(thread_id, batched=True)


def threads_delete_when_idle(*, thread_ids: list[str]) -> None:
    """thread_delete_when_idle for a worker's batch of stateless threads. On
    PostgreSQL the idle ones go in one transaction: their rows locked in id
    order (two batches cannot deadlock), deleted in one statement, their
    checkpoints after commit in one more; any other (something active on it,
    a cron, an open stream) then goes through thread_delete_when_idle."""
    if connection.vendor != "postgresql" or len(thread_ids) < 2:
        for thread_id in thread_ids:
            thread_delete_when_idle(thread_id=thread_id)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT thread_id::text FROM threads_thread WHERE thread_id = ANY(%s::uuid[]) "
                "ORDER BY thread_id FOR UPDATE",
                [sorted({str(t) for t in thread_ids})],
            )
            existing = [row[0] for row in cursor.fetchall()]
        deleted = threads_delete_if_idle_postgres(thread_ids=existing) if existing else set()
    for thread_id in existing:
        if thread_id not in deleted:
            thread_delete_when_idle(thread_id=thread_id)


def thread_delete_when_idle(*, thread_id: Id) -> None:
    """Delete a stateless run's thread once nothing else waits on it: no run
    pending or running, no open stream reading its events (runs.streaming
    asks again when that stream ends)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT 1 FROM threads_thread WHERE thread_id = %s FOR UPDATE", [str(thread_id)]
                )
                if cursor.fetchone() is None:
                    return
            if thread_delete_if_idle_postgres(thread_id=thread_id):
                return
            # something is active on it, or it has a cron: as below
        thread = locks.lock_thread_row(thread_id)
        if thread is None:
            return
        if Run.objects.filter(thread=thread, status__in=ACTIVE).exists():
            return
        if ThreadStream.objects.filter(thread=thread, expires_at__gt=timezone.now()).exists():
            return  # a stream still reads its runs' events: its relay deletes it after
        thread_delete(thread=thread)
