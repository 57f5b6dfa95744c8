"""Store items' TTL: expiry by beat's sweep and refresh on read, through the
official SDK against the live server, on PostgreSQL (PostgresStore) and on
SQLite (SqliteStore, as the embedded default opens it), with no sleeping.

How the clock is set. LangGraph's stores keep one timestamp for TTL,
`expires_at` in their `store` table, and compare it with the database's own
clock: the sweep deletes `WHERE expires_at < NOW()` (PostgreSQL) or
`< CURRENT_TIMESTAMP` (SQLite), and a refreshing read sets
`expires_at = now + ttl_minutes`. Neither clock can be set from a test, so
time is moved the other way: `advance(minutes)` subtracts `minutes` from the
`expires_at` of this test's items. For every comparison the store makes, that
is the same as the database's clock having moved forward by `minutes` (no
other column takes part in TTL). `expires_at` is read from the table itself
(the API does not show it) to measure what a read did to it.

On SQLite the test points cronsvc's store at a SqliteStore in a temporary
directory (store.backend opens one when the database is not PostgreSQL, as
`manage.py dev` does); the live server runs in this process, so its `/store`
endpoints use that store.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection

from store import backend
from store.tasks import sweep

pytestmark = pytest.mark.django_db(transaction=True)

TTL_MINUTES = 10
MINUTE = dt.timedelta(minutes=1)


class StoreTable:
    """The store's `store` table, read and shifted directly, on either backend."""

    def __init__(self, vendor: str, sqlite_path=None):
        self.vendor = vendor
        self.sqlite_path = sqlite_path

    def _execute(self, sql_postgres: str, sql_sqlite: str, params: list) -> list[tuple]:
        if self.vendor == "postgres":
            with connection.cursor() as cursor:
                cursor.execute(sql_postgres, params)
                return cursor.fetchall() if cursor.description else []
        with sqlite3.connect(self.sqlite_path, isolation_level=None) as conn:
            return conn.execute(sql_sqlite, params).fetchall()

    def expires_at(self, namespace: list[str], key: str) -> dt.datetime | None:
        rows = self._execute(
            "SELECT expires_at FROM store WHERE prefix = %s AND key = %s",
            "SELECT DATETIME(expires_at) FROM store WHERE prefix = ? AND key = ?",
            [".".join(namespace), key],
        )
        if not rows:
            return None
        return _aware(rows[0][0])

    def now(self) -> dt.datetime:
        """The database's clock, the one TTL compares with."""
        return _aware(self._execute("SELECT NOW()", "SELECT DATETIME(CURRENT_TIMESTAMP)", [])[0][0])

    def advance(self, namespace: list[str], minutes: float) -> None:
        """Move the clock `minutes` forward for the items under `namespace`."""
        self._execute(
            "UPDATE store SET expires_at = expires_at - make_interval(mins => %s) "
            "WHERE prefix LIKE %s AND expires_at IS NOT NULL",
            "UPDATE store SET expires_at = DATETIME(expires_at, ?) "
            "WHERE prefix LIKE ? AND expires_at IS NOT NULL",
            [
                minutes if self.vendor == "postgres" else f"-{minutes} minutes",
                ".".join(namespace) + "%",
            ],
        )


def _aware(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: "YYYY-MM-DD HH:MM:SS", UTC
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@pytest.fixture(params=["postgres", "sqlite"])
def ttl_store(request, settings, tmp_path, monkeypatch):
    """cronsvc's store with `"store": {"ttl": {"default_ttl": 60}}` in
    langgraph.json (refresh_on_read left to its default, on, which SqliteStore
    alone would read as off), on the backend the test is parametrized with."""
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "graphs": {"agent": "./examples/agent.py:graph"},
                "store": {"ttl": {"default_ttl": 60}},
            }
        )
    )
    settings.LANGGRAPH_CONFIG = config
    if request.param == "sqlite":
        monkeypatch.setattr(backend, "_is_postgres", lambda: False)
        settings.DATA_DIR = tmp_path
    backend.store_config.cache_clear()
    backend.reset()
    store = backend.get_store()
    assert (
        type(store).__name__
        == {"postgres": "PostgresStore", "sqlite": "SqliteStore"}[request.param]
    )
    yield StoreTable(request.param, tmp_path / "store.sqlite3")
    if request.param == "sqlite":
        store.conn.close()  # type: ignore[attr-defined]
    backend.store_config.cache_clear()
    backend.reset()


def test_items_expire_refresh_on_read_and_are_swept(sdk, ttl_store):
    table = ttl_store
    ns = ["ttl", uuid.uuid4().hex]
    sdk.store.put_item(ns, "short", {"v": 1}, ttl=TTL_MINUTES)
    sdk.store.put_item(ns, "long", {"v": 2}, ttl=60)

    put_at = table.now()
    expires = table.expires_at(ns, "short")
    assert abs(expires - (put_at + TTL_MINUTES * MINUTE)) < MINUTE

    # 6 minutes later: the item is there, and a read without refresh leaves its expiry alone.
    table.advance(ns, 6)
    before = table.expires_at(ns, "short")
    assert abs(before - (expires - 6 * MINUTE)) <= dt.timedelta(seconds=1)
    item = sdk.store.get_item(ns, "short", refresh_ttl=False)
    assert (item["key"], item["value"]) == ("short", {"v": 1})
    assert table.expires_at(ns, "short") == before
    found = sdk.store.search_items(ns, refresh_ttl=False)["items"]
    assert {i["key"] for i in found} == {"short", "long"}
    assert table.expires_at(ns, "short") == before

    # A read with refresh_ttl pushes the expiry to now + ttl: 6 minutes later than it was.
    assert sdk.store.get_item(ns, "short", refresh_ttl=True)["value"] == {"v": 1}
    refreshed = table.expires_at(ns, "short")
    assert abs(refreshed - (table.now() + TTL_MINUTES * MINUTE)) < MINUTE
    assert refreshed - before >= 5 * MINUTE

    # 11 minutes after the refresh it has expired: the reads leave it expired, and it
    # stays readable until the sweep (the stores hide nothing before it, omit_expired off).
    table.advance(ns, 11)
    expired = table.expires_at(ns, "short")
    assert expired < table.now()
    assert sdk.store.get_item(ns, "short", refresh_ttl=False)["value"] == {"v": 1}
    assert table.expires_at(ns, "short") == expired

    # Beat's periodic task, run as a worker runs it: the expired item goes, the other stays.
    assert django_settings.CELERY_BEAT_SCHEDULE["store.sweep"]["task"] == sweep.name
    assert sweep.apply().get() >= 1
    assert table.expires_at(ns, "short") is None
    assert sdk.store.get_item(ns, "short") is None  # the server's answer: 200, JSON null
    assert [i["key"] for i in sdk.store.search_items(ns)["items"]] == ["long"]
    assert sdk.store.get_item(ns, "long")["value"] == {"v": 2}
