"""LangGraph's own stores, connected to Django's database: the long-term
memory every graph run gets (`get_store()`, a node's `store` parameter) and
the `/store` endpoints read and write.

One store per process, opened on first use, like the checkpointer: on
PostgreSQL a `PostgresStore` over the checkpointer's connection pool (no
connections of its own; tables created by the store app's migration), on
SQLite a `SqliteStore` on its own file beside the database (tables created
when opened). `langgraph.json`'s `"store"` key configures it:

    "store": {"ttl": {"default_ttl": 1440, "refresh_on_read": true,
                      "sweep_interval_minutes": 60}}

`ttl` minutes; expired items are swept by beat (`store_sweep`). A semantic
`index` needs pgvector (PostgreSQL) or sqlite-vec (SQLite) and an embedding
function; cronsvc does not support it yet and says so at startup.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from langgraph.store.base import BaseStore, TTLConfig

from cronsvc import checkpointer

_lock = threading.Lock()
_store: BaseStore | None = None

TTL_KEYS = {"default_ttl", "refresh_on_read", "sweep_interval_minutes"}


class StoreConfigError(ValueError):
    """`langgraph.json`'s "store" cannot be used; the message says why."""


@cache
def store_config() -> dict[str, Any]:
    """`langgraph.json`'s "store" object ({} when absent), checked."""
    with Path(settings.LANGGRAPH_CONFIG).open() as fh:
        config = json.load(fh).get("store") or {}
    if not isinstance(config, dict):
        raise StoreConfigError('"store" in langgraph.json must be an object')
    if config.get("index"):
        raise StoreConfigError(
            '"store.index" (semantic search) is not supported by cronsvc yet: it needs the '
            "pgvector extension (PostgreSQL) or sqlite-vec (SQLite) and an embedding "
            'function. Remove "index" to use the store without semantic search.'
        )
    ttl = config.get("ttl") or {}
    if not isinstance(ttl, dict) or set(ttl) - TTL_KEYS:
        raise StoreConfigError(f'"store.ttl" in langgraph.json takes only {sorted(TTL_KEYS)}')
    return config


def ttl_config() -> TTLConfig | None:
    ttl = store_config().get("ttl")
    return TTLConfig(**ttl) if ttl else None


def _is_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def setup_postgres_tables() -> None:
    """Create or migrate the PostgresStore's tables (run by a Django migration)."""
    import psycopg  # noqa: PLC0415 - the PostgreSQL driver, only on PostgreSQL
    from langgraph.store.postgres import PostgresStore  # noqa: PLC0415 - ditto
    from psycopg.rows import dict_row  # noqa: PLC0415 - ditto

    with psycopg.connect(
        checkpointer.postgres_conninfo(), autocommit=True, row_factory=dict_row
    ) as conn:
        PostgresStore(conn).setup()


def get_store() -> BaseStore:
    """This process's store (opened on first use)."""
    global _store
    if _store is not None:
        return _store
    with _lock:
        if _store is not None:
            return _store
        if _is_postgres():
            from langgraph.store.postgres import PostgresStore  # noqa: PLC0415 - PostgreSQL only

            # The checkpointer's pool: the store adds no connections to the budget.
            _store = PostgresStore(checkpointer.get_saver().conn, ttl=ttl_config())
        else:
            from langgraph.store.sqlite import SqliteStore  # noqa: PLC0415 - SQLite only

            conn = sqlite3.connect(
                str(settings.DATA_DIR / "store.sqlite3"),
                check_same_thread=False,
                timeout=30,
                isolation_level=None,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            _store = SqliteStore(conn, ttl=ttl_config())
            _store.setup()
        return _store


def reset() -> None:
    """Forget this process's store (after a fork, or when the database changes);
    on PostgreSQL its connections are the checkpointer's, reset with it."""
    global _store
    with _lock:
        _store = None


def store_sweep() -> int:
    """Delete expired items; how many (0 when no TTL is configured)."""
    if ttl_config() is None:
        return 0
    return int(get_store().sweep_ttl())
