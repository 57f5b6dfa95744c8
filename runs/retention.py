"""Retention: what a frequent cron leaves behind is deleted after a while.

- Finished runs (error, success, timeout, interrupted) whose `finished_at` is
  older than CRONSVC_RETENTION_DAYS (partial index `run_finished_at`);
  pending and running runs are never touched.
- Ticks recorded longer ago than that (index on `created_at`). The exactly-once
  key needs only recent ticks: a cron's `next_run_date` is past them.
- LangGraph checkpoints beyond the newest CRONSVC_CHECKPOINTS_KEEP per
  (thread_id, checkpoint_ns), through the saver's own tables: on PostgreSQL
  `checkpoints`, their `checkpoint_writes`, and the `checkpoint_blobs` no kept
  checkpoint refers to; on SQLite the checkpoint file's `checkpoints` and
  `writes`. Checkpoint ids are time-ordered (uuid6), so newest = largest.
  A thread is pruned under its row lock and only with no run running on it,
  so a run cannot write a checkpoint while its blobs are being collected.

Every step deletes in batches of CRONSVC_PRUNE_BATCH rows (or thread
namespaces), at most CRONSVC_PRUNE_MAX_BATCHES batches per step and pass.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from crons.models import Cron, Tick
from cronsvc import checkpointer
from runs import lifecycle
from runs.lifecycle import ACTIVE
from runs.models import Run
from threads import ttl as thread_ttl
from threads.models import Thread

log = logging.getLogger(__name__)


def _delete_in_batches(queryset, order: str, batch: int, max_batches: int) -> int:
    deleted = 0
    for _ in range(max_batches):
        pks = list(queryset.order_by(order).values_list("pk", flat=True)[:batch])
        if not pks:
            break
        # Counted per model: a run's stream events go with it, and are not runs.
        deleted += queryset.filter(pk__in=pks).delete()[1].get(queryset.model._meta.label, 0)
        if len(pks) < batch:
            break
    return deleted


def prune_runs(*, older_than: timedelta, batch: int, max_batches: int) -> int:
    cutoff = timezone.now() - older_than
    finished = Run.objects.filter(status__in=Run.FINISHED, finished_at__lt=cutoff)
    return _delete_in_batches(finished, "finished_at", batch, max_batches)


def prune_ticks(*, older_than: timedelta, batch: int, max_batches: int) -> int:
    cutoff = timezone.now() - older_than
    old = Tick.objects.filter(created_at__lt=cutoff, scheduled_at__lt=cutoff)
    return _delete_in_batches(old, "created_at", batch, max_batches)


# PostgreSQL: the newest `keep` per (thread, ns) stay; writes of the others
# go with them; blobs go when no remaining checkpoint of the namespace has
# that channel at that version.
_PG_OVER_KEEP = """
    SELECT thread_id, checkpoint_ns FROM checkpoints
    WHERE (thread_id, checkpoint_ns) > (%s, %s)
    GROUP BY thread_id, checkpoint_ns HAVING count(*) > %s
    ORDER BY thread_id, checkpoint_ns LIMIT %s
"""
_PG_DOOMED = """
    SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s
    ORDER BY checkpoint_id DESC OFFSET %s
"""
_PG_DELETE_WRITES = """
    DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s
    AND checkpoint_id = ANY(%s)
"""
_PG_DELETE_CHECKPOINTS = """
    DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s
    AND checkpoint_id = ANY(%s)
"""
_PG_DELETE_BLOBS = """
    DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = %s
    AND NOT EXISTS (
        SELECT 1 FROM checkpoints c
        WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
        AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)
"""


def _thread_uuid(thread_id: str):
    try:
        return uuid.UUID(thread_id)
    except ValueError:
        return None


def _prune_namespace_postgres(thread_id: str, ns: str, keep: int) -> tuple[int, bool]:
    """(checkpoints deleted, pruned?) for one (thread, ns) under the thread's lock."""
    with transaction.atomic():
        pk = _thread_uuid(thread_id)
        if pk is not None:
            locked = Thread.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if locked is None and Thread.objects.filter(pk=pk).exists():
                return 0, False  # a claimer holds it: next pass
            if Run.objects.filter(thread_id=pk, status=Run.Status.RUNNING).exists():
                return 0, False
        with connection.cursor() as cursor:
            cursor.execute(_PG_DOOMED, [thread_id, ns, keep])
            doomed = [row[0] for row in cursor.fetchall()]
            if not doomed:
                return 0, True
            cursor.execute(_PG_DELETE_WRITES, [thread_id, ns, doomed])
            cursor.execute(_PG_DELETE_CHECKPOINTS, [thread_id, ns, doomed])
            deleted = cursor.rowcount
            cursor.execute(_PG_DELETE_BLOBS, [thread_id, ns])
        return deleted, True


def prune_checkpoints_postgres(*, keep: int, batch: int, max_batches: int) -> int:
    deleted = 0
    after = ("", "")
    for _ in range(max_batches):
        with connection.cursor() as cursor:
            cursor.execute(_PG_OVER_KEEP, [*after, keep, batch])
            groups = cursor.fetchall()
        for thread_id, ns in groups:
            count, _ = _prune_namespace_postgres(thread_id, ns, keep)
            deleted += count
        if len(groups) < batch:
            break
        after = groups[-1]
    return deleted


def prune_checkpoints_sqlite(conn, *, keep: int, batch: int, max_batches: int) -> int:
    """The SqliteSaver's file: checkpoints and writes (values are inline, no
    shared blobs, so a run writing meanwhile only adds newer rows)."""
    deleted = 0
    after = ("", "")
    for _ in range(max_batches):
        groups = conn.execute(
            "SELECT thread_id, checkpoint_ns FROM checkpoints "
            "WHERE (thread_id > ?) OR (thread_id = ? AND checkpoint_ns > ?) "
            "GROUP BY thread_id, checkpoint_ns HAVING count(*) > ? "
            "ORDER BY thread_id, checkpoint_ns LIMIT ?",
            (after[0], after[0], after[1], keep, batch),
        ).fetchall()
        for thread_id, ns in groups:
            with conn:
                doomed = [
                    row[0]
                    for row in conn.execute(
                        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND "
                        "checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT -1 OFFSET ?",
                        (thread_id, ns, keep),
                    )
                ]
                marks = ",".join("?" * len(doomed))
                conn.execute(
                    f"DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "  # noqa: S608
                    f"AND checkpoint_id IN ({marks})",
                    (thread_id, ns, *doomed),
                )
                deleted += conn.execute(
                    f"DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "  # noqa: S608
                    f"AND checkpoint_id IN ({marks})",
                    (thread_id, ns, *doomed),
                ).rowcount
        if len(groups) < batch:
            break
        after = groups[-1]
    return deleted


def prune_checkpoints(*, keep: int, batch: int, max_batches: int) -> int:
    if connection.vendor == "postgresql":
        return prune_checkpoints_postgres(keep=keep, batch=batch, max_batches=max_batches)
    checkpointer.get_saver()  # creates the file's tables
    conn = checkpointer.sqlite_connection()
    try:
        return prune_checkpoints_sqlite(conn, keep=keep, batch=batch, max_batches=max_batches)
    finally:
        conn.close()


def prune(
    *,
    retention_days: float | None = None,
    checkpoints_keep: int | None = None,
    batch: int | None = None,
    max_batches: int | None = None,
) -> dict[str, int]:
    """One retention pass; returns what it deleted: {"runs", "ticks", "checkpoints"}."""
    days = settings.CRONSVC_RETENTION_DAYS if retention_days is None else retention_days
    keep = settings.CRONSVC_CHECKPOINTS_KEEP if checkpoints_keep is None else checkpoints_keep
    batch = batch or settings.CRONSVC_PRUNE_BATCH
    max_batches = max_batches or settings.CRONSVC_PRUNE_MAX_BATCHES
    report = {"runs": 0, "ticks": 0, "checkpoints": 0}
    if days > 0:
        older = timedelta(days=days)
        report["runs"] = prune_runs(older_than=older, batch=batch, max_batches=max_batches)
        report["ticks"] = prune_ticks(older_than=older, batch=batch, max_batches=max_batches)
    if keep > 0:
        report["checkpoints"] = prune_checkpoints(keep=keep, batch=batch, max_batches=max_batches)
    if any(report.values()):
        log.info("pruned %s", report)
    return report


def sweep_expired_threads(*, limit: int | None = None, now: datetime | None = None) -> dict:
    """Threads whose TTL has expired (threads.ttl), at most `limit`
    (CRONSVC_REAP_BATCH) a pass, oldest expiry first, claimed with SKIP LOCKED
    (a run being created on one holds its row, and renews it). "delete": each
    goes as threads.delete removes one, once no run is pending or running on it
    and no stream reads it (until then it waits for a later pass);
    "keep_latest": its checkpoints are pruned to the latest and its expiry
    cleared until its next run. A thread with a cron is in use, however rarely
    the cron fires: its expiry is renewed instead. Returns the counts."""
    limit = limit or settings.CRONSVC_REAP_BATCH
    now = now or timezone.now()
    active = Run.objects.filter(thread_id=OuterRef("pk"), status__in=ACTIVE)
    done = {"deleted": 0, "pruned": 0, "renewed": 0}
    with transaction.atomic():
        rows = list(
            Thread.objects.filter(expires_at__lte=now)
            .exclude(Exists(active))
            .annotate(has_cron=Exists(Cron.objects.filter(thread_id=OuterRef("pk"))))
            .order_by("expires_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", "ttl_strategy", "ttl_minutes", "has_cron")[:limit]
        )
        doomed, kept = [], []
        for thread_id, strategy, minutes, has_cron in rows:
            if has_cron:
                renewed = thread_ttl.expiry(minutes, now)
                Thread.objects.filter(pk=thread_id).update(expires_at=renewed)
                done["renewed"] += 1
            elif strategy == "keep_latest":
                kept.append(str(thread_id))
            else:
                lifecycle.thread_delete_when_idle(thread_id=thread_id)
                doomed.append(thread_id)
        if kept:
            Thread.objects.filter(pk__in=kept).update(expires_at=None)
            transaction.on_commit(lambda: checkpointer.prune_keep_latest(kept))
            done["pruned"] = len(kept)
        if doomed:
            done["deleted"] = len(doomed) - Thread.objects.filter(pk__in=doomed).count()
    if any(done.values()):
        log.info("thread TTLs: %s", done)
    return done
