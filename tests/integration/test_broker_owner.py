"""Two instances on one Redis database and queue are told about each other
(cronsvc.broker_owner): the second to claim a queue learns the first's
database, and its worker warns."""

import logging
import uuid

import pytest
import redis
from django.conf import settings

from cronsvc import broker_owner


@pytest.fixture
def redis_url():
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("Redis broker only")
    return url


@pytest.fixture
def queue(redis_url):
    name = f"owner-test-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(broker_owner.KEY_PREFIX + name)
    client.close()


def test_second_instance_sees_the_first(redis_url, queue):
    claim = {"broker_url": redis_url, "queue": queue, "ttl": 30}
    assert broker_owner.queue_claim(**claim, identity="postgresql://a:5432/one") is None
    # The same instance refreshes its claim.
    assert broker_owner.queue_claim(**claim, identity="postgresql://a:5432/one") is None
    assert (
        broker_owner.queue_claim(**claim, identity="postgresql://b:5432/two")
        == "postgresql://a:5432/one"
    )


def test_filesystem_broker_is_not_checked(queue):
    assert (
        broker_owner.queue_claim(broker_url="filesystem://", queue=queue, identity="x", ttl=30)
        is None
    )


def test_worker_warns_once(redis_url, queue, caplog, settings):
    settings.CELERY_BROKER_URL = redis_url
    broker_owner.queue_claim(broker_url=redis_url, queue=queue, identity="elsewhere", ttl=30)
    with caplog.at_level(logging.WARNING, logger="cronsvc.broker_owner"):
        other = broker_owner.queue_claim_or_warn(queue)
        assert other == "elsewhere"
        assert broker_owner.queue_claim_or_warn(queue, warned=other) == "elsewhere"
    warnings = [r for r in caplog.records if "Another cronsvc instance" in r.getMessage()]
    assert len(warnings) == 1
    assert "CELERY_QUEUE" in warnings[0].getMessage()
