"""cronsvc.pgpool: the API's pool lends a connection handed back moments ago
without a round trip, and checks one idle longer, replacing it if the
database closed it meanwhile (a restart, an idle timeout) instead of failing
the request."""

import pytest
from django.db import connection

from cronsvc.pgpool import base as pgpool

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pooled():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    settings = {
        **connection.settings_dict,
        "ENGINE": "cronsvc.pgpool",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1}},
    }
    wrapper = pgpool.DatabaseWrapper(settings, alias="pgpool_test")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def kill(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_idle_past_the_check_is_replaced_when_the_database_closed_it(
    pooled, monkeypatch
):
    pid = backend_pid(pooled)
    pooled.close()  # back to the pool
    kill(pid)
    monkeypatch.setattr(pgpool, "IDLE_CHECK", 0.0)
    assert backend_pid(pooled) != pid  # checked, found closed, replaced
    pooled.close()


def test_a_connection_handed_back_moments_ago_is_lent_without_a_check(pooled, monkeypatch):
    pid = backend_pid(pooled)
    pooled.close()
    checks = []
    monkeypatch.setattr(pgpool.ConnectionPool, "check_connection", staticmethod(checks.append))
    assert backend_pid(pooled) == pid
    assert checks == []
    pooled.close()
