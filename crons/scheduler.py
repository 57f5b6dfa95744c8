"""cronsvc's beat scheduler: django-celery-beat's DatabaseScheduler, reading
due crons from the cron table's indexed next-fire column instead of loading
every PeriodicTask.

Per tick it does work proportional to the crons due: one indexed query for
what is due, the claims and runs of those, and one indexed query for when the
next one is due. It never loads all periodic tasks, never reloads on changes
(an edited cron's new `next_run_date` is simply read at the next tick), and
sleeps until the next due instant (at most CRONSVC_BEAT_MAX_INTERVAL).

Only the lease holder fires (see crons.lease); a standby beat keeps trying
to take the lease and takes over once it expires. Every beat, active or
standby, writes a heartbeat row every CRONSVC_HEARTBEAT_INTERVAL seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from celery.beat import ScheduleEntry, Scheduler
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connections
from django_celery_beat.schedulers import DatabaseScheduler

from crons import ticking
from crons.lease import LeaseLost, lease_acquire, lease_release
from cronsvc import heartbeats
from cronsvc.dbclock import db_now

log = logging.getLogger(__name__)


class Advancer(threading.Thread):
    """Computes next fire times of crons fired in a batch (off the dispatch path)."""

    def __init__(self):
        super().__init__(name="cron-advancer", daemon=True)
        self.wake = threading.Event()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                close_old_connections()
                done = ticking.advance(limit=500)
            except (DatabaseError, InterfaceError) as exc:
                log.warning("advancing crons failed, retrying: %s", exc)
                done = 0
            if not done:
                self.wake.wait(1.0)
                self.wake.clear()


class CronScheduler(DatabaseScheduler):
    # Own entries are plain in-memory entries, not django-celery-beat models.
    Entry = ScheduleEntry

    def __init__(self, *args, **kwargs):
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.epoch: int | None = None
        self._renew_at = None
        self._heartbeat_at = None
        self._ticking = False
        self._wakes: dict = {}  # prepared instant -> runs to wake workers for
        self._own: dict = {}
        super().__init__(*args, **kwargs)
        self.max_interval = settings.CRONSVC_BEAT_MAX_INTERVAL
        self.advancer = Advancer()
        self.advancer.start()

    # cronsvc's own periodic entries (app.conf.beat_schedule) stay in memory;
    # crons are never loaded as entries.
    def setup_schedule(self):
        self._own = {}
        self.merge_inplace(self.app.conf.beat_schedule)

    @property
    def schedule(self):
        return self._own

    def all_as_schedule(self):
        return self._own

    def schedule_changed(self):
        return False

    def reserve(self, entry):
        return Scheduler.reserve(self, entry)

    def sync(self):
        pass

    def close(self):
        self.advancer.stopped.set()
        self.advancer.wake.set()
        if self._ticking:
            # Celery's SIGTERM handler calls close() on the main thread, maybe in
            # the middle of a tick's query: a query now would wait on that same
            # connection forever. The handler then raises SystemExit, and Celery
            # calls close() again once the tick is unwound.
            return
        # The interrupted query can leave the connection unusable: on a
        # failure, reconnect once.
        for _ in range(2):
            try:
                # A batch fired just before the stop leaves its crons to the
                # advancer: compute their next fire times now, so a clean stop
                # leaves no cron without one.
                ticking.advance()
                lease_release(holder=self.holder)
                heartbeats.beat_heartbeat_delete(name=self.holder)
                break
            except Exception:  # noqa: BLE001 - the lease and the heartbeat expire on their own
                try:
                    connections.close_all()
                except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close
                    pass
        super().close()

    def tick(self, *args, **kwargs):
        self._ticking = True
        try:
            return self._tick(*args, **kwargs)
        finally:
            self._ticking = False

    def _tick(self, *args, **kwargs):
        own_delay = Scheduler.tick(self, *args, **kwargs)
        try:
            close_old_connections()
            now = db_now()
            # Renew the lease when a third of it is used, not on every tick;
            # the claims check it (under a row lock) anyway.
            if self.epoch is None or self._renew_at is None or now >= self._renew_at:
                previous = self.epoch
                self.epoch = lease_acquire(holder=self.holder, now=now)
                if self.epoch is not None and self.epoch != previous:
                    # Taking over: wake workers for runs another beat prepared.
                    grace = timedelta(seconds=settings.CRONSVC_MISSED_TICK_GRACE)
                    for instant, count in ticking.prepared_instants(since=now - grace).items():
                        self._wakes[instant] = max(self._wakes.get(instant, 0), count)
                lease = settings.CRONSVC_BEAT_LEASE_SECONDS
                self._renew_at = now + timedelta(seconds=lease / 3) if self.epoch else None
            if self._heartbeat_at is None or now >= self._heartbeat_at:
                # Shows this beat alive, standby included (cronsvc.heartbeats).
                heartbeats.beat_heartbeat_write(
                    name=self.holder, hostname=socket.gethostname(), pid=os.getpid()
                )
                self._heartbeat_at = now + timedelta(seconds=settings.CRONSVC_HEARTBEAT_INTERVAL)
            if self.epoch is None:
                return min(own_delay, self.max_interval)
            report = ticking.fire_due(
                now=now,
                holder=self.holder,
                epoch=self.epoch,
                lookahead=settings.CRONSVC_DISPATCH_LOOKAHEAD,
            )
            for instant, count in report.prepared.items():
                self._wakes[instant] = self._wakes.get(instant, 0) + count
            self._wake_due(now)
            if report.fired:
                self.advancer.wake.set()
            if report.fired or report.skipped or report.rejected:
                log.info(
                    "tick %s: fired %s, skipped %s, rejected %s",
                    now.isoformat(),
                    report.fired,
                    report.skipped,
                    report.rejected,
                )
            next_due = ticking.next_due_at()
        except LeaseLost as exc:
            log.warning("%s", exc)
            self.epoch = None
            return self.max_interval
        except (DatabaseError, InterfaceError) as exc:
            log.warning("scheduler tick failed, retrying: %s", exc)
            return self.max_interval
        delay = self.max_interval
        now = db_now()
        if next_due is not None:
            lookahead = timedelta(seconds=settings.CRONSVC_DISPATCH_LOOKAHEAD)
            delay = min(delay, max((next_due - lookahead - now).total_seconds(), 0.0))
        if self._wakes:
            delay = min(delay, max((min(self._wakes) - now).total_seconds(), 0.0))
        return max(0.0, min(own_delay, delay))

    def _wake_due(self, now) -> None:
        """At each prepared instant, wake workers for the runs prepared for it."""
        for instant in sorted(i for i in self._wakes if i <= now):
            fanout = ticking.wake_fanout(self._wakes[instant])  # may fail: kept for the retry
            del self._wakes[instant]
            ticking.wake_workers(fanout)
