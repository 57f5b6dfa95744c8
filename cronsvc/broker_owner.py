"""Two cronsvc instances on one Redis database and queue take each other's
messages: a wake-up published by one is consumed by the other's worker, which
finds no such run in its own database. Celery cannot tell them apart, so each
worker records whose queue it consumes — a key per queue holding the
instance's database identity, refreshed with its heartbeat — and warns when
another instance already holds it.

Only the Redis broker is checked; the embedded filesystem broker lives in the
instance's own data directory.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

KEY_PREFIX = "cronsvc:queue-owner:"


def instance_identity() -> str:
    """This instance's database: host, port and name (or the SQLite file)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:{db['NAME']}"
    return (
        f"{connection.vendor}://{db.get('HOST') or 'localhost'}:{db.get('PORT') or ''}/{db['NAME']}"
    )


def queue_claim(*, broker_url: str, queue: str, identity: str, ttl: int) -> str | None:
    """Record that `identity` consumes `queue` on the Redis broker at
    `broker_url` for `ttl` seconds. Returns the identity of another instance
    holding it, or None (claimed or refreshed; also None off Redis)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        key = KEY_PREFIX + queue
        if client.set(key, identity, nx=True, ex=ttl):
            return None
        holder = client.get(key)
        if holder is None or holder.decode() == identity:
            client.set(key, identity, ex=ttl)
            return None
        return holder.decode()
    finally:
        client.close()


def queue_claim_or_warn(queue: str, *, warned: str | None = None) -> str | None:
    """Claim (or refresh) this instance's queue; log a warning when another
    cronsvc instance uses the same broker database and queue, unless it is
    `warned` (the one this caller already warned about). Returns the other."""
    ttl = max(3 * int(settings.CRONSVC_HEARTBEAT_INTERVAL), 30)
    try:
        other = queue_claim(
            broker_url=settings.CELERY_BROKER_URL,
            queue=queue,
            identity=instance_identity(),
            ttl=ttl,
        )
    except redis.RedisError as exc:
        log.warning("could not check the broker for other cronsvc instances: %s", exc)
        return warned
    if other is not None and other != warned:
        log.warning(
            "Another cronsvc instance (database %s) consumes queue %r on this broker "
            "database: the two take each other's messages. Give each instance its own "
            "Redis database (CELERY_BROKER_URL=redis://host:6379/N) or its own CELERY_QUEUE.",
            other,
            queue,
        )
    return other
