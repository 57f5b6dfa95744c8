"""The scheduler lease: which beat may fire crons, and fencing.

One row (SchedulerLease, name LEASE_NAME) holds the active beat's name, an
epoch and an expiry. A beat takes it when it is free or expired (the epoch
goes up by one) and renews it while it holds it. Every claim of due crons
calls `check` in the claiming transaction, under a row lock on the lease:
a beat whose lease expired or was taken over (an older epoch) raises
LeaseLost there and fires nothing, whatever it believes about itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from crons.models import SchedulerLease

log = logging.getLogger(__name__)

LEASE_NAME = "beat"


class LeaseLost(Exception):
    """The caller no longer holds the scheduler lease at the epoch it claims."""


def lease_acquire(*, holder: str, now: datetime, ttl: float | None = None) -> int | None:
    """Take or renew the scheduler lease; returns its epoch, or None when another holds it."""
    ttl = ttl if ttl is not None else settings.CRONSVC_BEAT_LEASE_SECONDS
    expires = now + timedelta(seconds=ttl)
    with transaction.atomic():
        SchedulerLease.objects.bulk_create(
            [SchedulerLease(name=LEASE_NAME, holder="", epoch=0, expires_at=now)],
            ignore_conflicts=True,
        )
        lease = SchedulerLease.objects.select_for_update().get(name=LEASE_NAME)
        if lease.holder == holder and lease.expires_at > now:
            lease.expires_at = expires
            lease.save(update_fields=["expires_at"])
            return lease.epoch
        if lease.expires_at <= now or not lease.holder:
            lease.holder, lease.epoch, lease.expires_at = holder, lease.epoch + 1, expires
            lease.save(update_fields=["holder", "epoch", "expires_at"])
            log.info("scheduler lease taken by %s (epoch %s)", holder, lease.epoch)
            return lease.epoch
        return None


def lease_release(*, holder: str) -> None:
    SchedulerLease.objects.filter(name=LEASE_NAME, holder=holder).update(holder="")


def check(holder: str | None, epoch: int | None, now: datetime) -> None:
    """Fencing, in the caller's transaction: raise LeaseLost unless `holder`
    still holds the lease at `epoch` (the row stays locked until commit).
    No holder (tests, one-off calls): nothing to check."""
    if holder is None:
        return
    held = (
        SchedulerLease.objects.select_for_update()
        .filter(name=LEASE_NAME, holder=holder, epoch=epoch, expires_at__gt=now)
        .exists()
    )
    if not held:
        raise LeaseLost(f"{holder} no longer holds the scheduler lease (epoch {epoch})")
