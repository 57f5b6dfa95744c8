"""Run leases, the reaper and the reconciler: no run lost, none stuck.

A worker that claims a run takes its lease (`lease_expires_at`, on the
database's clock, `CRONSVC_RUN_LEASE_SECONDS` ahead) and renews it while the
graph runs: between graph steps, and while a step runs from the worker
process's one renewer thread, which renews all its runs' leases in one
statement (`LeaseKeeper`, `LeaseRenewer`). A worker killed mid-run stops renewing; the reaper
(`runs.reap`, a periodic task) finds its run `running` with an expired lease
and returns it to `pending` (it keeps its attempt count) with a wake-up, or,
once it has been attempted `CRONSVC_RUN_MAX_ATTEMPTS` times (attempts
ended by a failure its cron's retry_policy retried are counted apart, in
`failure_attempts`), ends it as `error` with the reason. A renewal or finish names its attempt, so a worker
that lost its lease cannot renew or finish the run again.

The reconciler (`runs.reconcile`) covers the other loss: a deferred action
whose message never reached a worker (the publisher died between commit and
publish, Redis restarted without persistence, the filesystem broker's
read-and-delete, a second worker on the same broker). Every kind is found
from the rows, never from the messages:
- a pending, ready run: fresh wake-ups (`runs_reconcile`); they only claim,
  so a spare one claims nothing;
- a webhook delivery that has not moved for a whole retry schedule: its
  delivery again (`runs_reconcile`);
- a finished stateless run's thread (on_completion="delete") still there
  CRONSVC_STATELESS_THREAD_GRACE + CRONSVC_RECONCILE_AFTER after the run
  ended: deleted (`stateless_threads_reconcile`), once nothing runs on it and
  its webhooks are settled (a delivery reads the thread's values).

Both work in bounded passes on row claims (SELECT … FOR UPDATE SKIP LOCKED,
then a compare-and-set on status and attempt), never check-then-act.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from runs import lifecycle, locks, wakeups
from runs.lifecycle import READY
from runs.models import Run, ThreadStream
from threads.models import Thread

log = logging.getLogger(__name__)


class LeaseKeeper:
    """A run's lease while its worker executes it: renewed every third of it,
    between graph steps by the executing thread (`renew_if_due`) and while a
    step runs by the process's one LeaseRenewer thread, which renews every
    due lease of the process in one statement.

    `lost` is set when a renewal finds the run no longer this attempt's. A
    failed renewal (database blip) is retried at the next beat: the lease
    has two more thirds to go."""

    def __init__(self, run: Run):
        self.run_id = run.run_id
        self.key = str(run.run_id)
        self.attempt = run.attempts
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self.interval = settings.CRONSVC_RUN_LEASE_SECONDS / 3
        self.renewed_at = time.monotonic()  # the claim took the lease

    def start(self) -> None:
        LeaseRenewer.of_process().add(self)

    def stop(self) -> None:
        LeaseRenewer.of_process().discard(self)

    def renew(self) -> bool:
        with self._lock:
            if not self.lost.is_set():
                if lifecycle.run_lease_renew(run_id=self.run_id, attempt=self.attempt):
                    self.renewed_at = time.monotonic()
                else:
                    self.lost.set()
        return not self.lost.is_set()

    def renew_if_due(self) -> bool:
        """Renew when a third of the lease has passed since the last renewal
        (between graph steps, on the executing thread). False when lost."""
        if time.monotonic() - self.renewed_at >= self.interval:
            try:
                return self.renew()
            except Exception as exc:  # noqa: BLE001 - the timer retries; the lease has time left
                log.warning("renewing the lease of run %s failed: %s", self.run_id, exc)
        return not self.lost.is_set()


class LeaseRenewer(threading.Thread):
    """The one thread of a worker process that renews its running runs'
    leases (LeaseKeeper) while their graph steps run: each beat, every lease
    past half its renewal interval, once one is due, in one statement
    (lifecycle.run_leases_renew). Started with the process's first run; a
    thread per run cost a thread start and, when it renewed, a database
    connection of its own per run."""

    _instance: LeaseRenewer | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def of_process(cls) -> LeaseRenewer:
        with cls._instance_lock:
            renewer = cls._instance
            if renewer is None or renewer.pid != os.getpid() or not renewer.is_alive():
                renewer = cls()
                renewer.start()
                cls._instance = renewer
            return renewer

    def __init__(self) -> None:
        super().__init__(name="lease-renewer", daemon=True)
        self.pid = os.getpid()
        self._keepers: dict[str, LeaseKeeper] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._wake_at = 0.0  # monotonic time of the next beat

    def add(self, keeper: LeaseKeeper) -> None:
        with self._lock:
            self._keepers[keeper.key] = keeper
        if keeper.renewed_at + keeper.interval < self._wake_at:
            self._wake.set()  # due before the next beat (a shorter lease than the last)

    def discard(self, keeper: LeaseKeeper) -> None:
        with self._lock:
            if self._keepers.get(keeper.key) is keeper:
                del self._keepers[keeper.key]

    def _wait(self) -> float:
        """Seconds until the next lease is due (a whole interval when none is
        held; a lease added meanwhile that is due sooner wakes the renewer)."""
        with self._lock:
            keepers = list(self._keepers.values())
        now = time.monotonic()
        due = [k.renewed_at + k.interval - now for k in keepers if not k.lost.is_set()]
        return max(0.05, min(due)) if due else settings.CRONSVC_RUN_LEASE_SECONDS / 3

    def renew_due(self) -> None:
        """One beat: renew the leases due now and those past half their
        interval with them; mark the lost ones."""
        now = time.monotonic()
        with self._lock:
            keepers = [k for k in self._keepers.values() if not k.lost.is_set()]
        if not any(now - k.renewed_at >= k.interval for k in keepers):
            return
        batch = [k for k in keepers if now - k.renewed_at >= k.interval / 2]
        for keeper in batch:
            keeper._lock.acquire()  # the keeper's own renewal waits meanwhile
        try:
            renewed, lost = lifecycle.run_leases_renew([(k.run_id, k.attempt) for k in batch])
            done = time.monotonic()
            for keeper in batch:
                if keeper.key in renewed:
                    keeper.renewed_at = done
                elif keeper.key in lost:
                    keeper.lost.set()
        finally:
            for keeper in batch:
                keeper._lock.release()

    def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                self._wake_at = float("inf")  # a lease added while this beat is planned wakes it
                wait = self._wait()
                self._wake_at = time.monotonic() + wait
                self._wake.wait(wait)
                try:
                    self.renew_due()
                except Exception as exc:  # noqa: BLE001 - retried at the next beat
                    log.warning("renewing run leases failed: %s", exc)
                    close_old_connections()
                    time.sleep(1.0)
                with self._lock:
                    idle = not self._keepers
                if idle:
                    connection.close()  # no run to renew: hold no connection meanwhile
        finally:
            connection.close()


def _lost_attempts(run: Run) -> int:
    """Attempts of `run` that did not end by a failure of their own (those
    its cron's retry_policy counts, `failure_attempts`): what
    CRONSVC_RUN_MAX_ATTEMPTS bounds."""
    return run.attempts - run.failure_attempts


def _lost_reason(run: Run) -> str:
    return (
        f"Run's worker was lost (lease expired) on attempt {_lost_attempts(run)} of "
        f"{settings.CRONSVC_RUN_MAX_ATTEMPTS} (CRONSVC_RUN_MAX_ATTEMPTS)"
    )


def runs_reap(*, limit: int | None = None) -> dict[str, int]:
    """Return running runs whose lease expired to pending, or error them once
    their attempts are spent. Returns {"requeued": n, "errored": m}."""
    limit = limit or settings.CRONSVC_REAP_BATCH
    requeued = errored = 0
    with transaction.atomic():
        expired = list(
            locks.lock_runs(
                Run.objects.filter(status=Run.Status.RUNNING, lease_expires_at__lt=Now()),
                skip_locked=True,
            ).order_by("lease_expires_at")[:limit]
        )
        for run in expired:
            if _lost_attempts(run) >= settings.CRONSVC_RUN_MAX_ATTEMPTS:
                reason = _lost_reason(run)
                log.warning("run %s: %s; ending it as error", run.run_id, reason)
                lifecycle.run_finish_locked(
                    run,
                    status=Run.Status.ERROR,
                    error=reason,
                    output={"error": "WorkerLost", "message": reason},
                )
                errored += 1
                continue
            if lifecycle.run_requeue(run):
                log.warning(
                    "run %s: worker lost on attempt %s (lease expired); back to pending",
                    run.run_id,
                    run.attempts,
                )
                requeued += 1
        if requeued:
            wakeups.wake_workers_after_commit(min(requeued, settings.CRONSVC_WAKE_FANOUT))
    return {"requeued": requeued, "errored": errored}


def _stalled_pending(after: float):
    """Pending runs ready for more than `after` seconds on threads with
    nothing running (a run queued behind a running one is waiting, not lost)."""
    cutoff = timezone.now() - timedelta(seconds=after)
    busy = Run.objects.filter(thread_id=OuterRef("thread_id"), status=Run.Status.RUNNING)
    return (
        Run.objects.filter(READY, status=Run.Status.PENDING, updated_at__lt=cutoff)
        .filter(Q(scheduled_at__isnull=True) | Q(scheduled_at__lt=cutoff))
        .filter(Q(not_before__isnull=True) | Q(not_before__lt=cutoff))
        .filter(~Exists(busy))
    )


def _stalled_webhooks(after: float):
    """Finished runs whose webhook delivery has not moved for longer than a
    whole retry schedule (its task message was lost)."""
    retry_span = settings.CRONSVC_WEBHOOK_BACKOFF * 2**settings.CRONSVC_WEBHOOK_MAX_ATTEMPTS
    cutoff = timezone.now() - timedelta(seconds=after + retry_span)
    return Run.objects.filter(webhook_status=Run.WebhookStatus.PENDING, updated_at__lt=cutoff)


def runs_reconcile(*, after: float | None = None, max_wakes: int | None = None) -> dict[str, Any]:
    """Publish wake-ups for stalled pending runs, at most `max_wakes`; re-enqueue
    stalled webhook deliveries. Returns {"stalled": n, "woken": k, "webhooks": w}."""
    after = settings.CRONSVC_RECONCILE_AFTER if after is None else after
    max_wakes = settings.CRONSVC_RECONCILE_MAX_WAKES if max_wakes is None else max_wakes
    stalled = _stalled_pending(after).values_list("pk", flat=True)[:max_wakes]
    count = len(stalled)
    if count:
        log.warning("%s pending run(s) waited over %g s for a worker; waking workers", count, after)
        wakeups.wake_workers(count)
    webhooks = list(
        _stalled_webhooks(after).values_list("pk", flat=True)[: settings.CRONSVC_REAP_BATCH]
    )
    for run_id in webhooks:
        wakeups.deliver_webhook(run_id)
    return {"stalled": count, "woken": count, "webhooks": len(webhooks)}


def _lost_stateless_threads(after: float) -> QuerySet[Thread]:
    """Threads of stateless runs (on_completion="delete") that ended more than
    CRONSVC_STATELESS_THREAD_GRACE + `after` seconds ago, with nothing active
    on them and no webhook delivery pending: their deletion message was lost."""
    cutoff = timezone.now() - timedelta(seconds=settings.CRONSVC_STATELESS_THREAD_GRACE + after)
    ended = Run.objects.filter(on_completion="delete", finished_at__lt=cutoff)  # partial index
    runs = Run.objects.filter(thread_id=OuterRef("pk"))
    return (
        Thread.objects.filter(
            pk__in=ended.values("thread_id"),
        )
        .exclude(
            Exists(
                runs.filter(
                    Q(status__in=lifecycle.ACTIVE) | Q(webhook_status=Run.WebhookStatus.PENDING)
                )
            )
        )
        .exclude(
            Exists(
                ThreadStream.objects.filter(thread_id=OuterRef("pk"), expires_at__gt=timezone.now())
            )
        )
    )


def stateless_threads_reconcile(*, after: float | None = None, limit: int | None = None) -> int:
    """Delete stateless runs' threads whose deletion message was lost, at most
    `limit` (CRONSVC_REAP_BATCH) a pass; returns how many. Thread rows are
    claimed with SKIP LOCKED (a run being created there, or another pass, holds
    them), then each goes through lifecycle.thread_delete_when_idle."""
    after = settings.CRONSVC_RECONCILE_AFTER if after is None else after
    limit = limit or settings.CRONSVC_REAP_BATCH
    with transaction.atomic():
        claimed = list(
            _lost_stateless_threads(after)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        for thread_id in claimed:
            lifecycle.thread_delete_when_idle(thread_id=thread_id)
    if claimed:
        log.warning(
            "%s stateless thread(s) outlived their run by over %g s (deletion message lost); "
            "deleted",
            len(claimed),
            settings.CRONSVC_STATELESS_THREAD_GRACE + after,
        )
    return len(claimed)
