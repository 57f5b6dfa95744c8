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

`ttl` minutes; expired items are swept by beat (`store_sweep`).

`"index": {"dims": ..., "embed": ..., "fields": [...]}` turns on semantic
search (store.index): passed as `index=` to the store, whose own setup creates
the vector tables, only then. On PostgreSQL `migrate` does it (post_migrate,
after creating the pgvector extension or saying why it cannot); the store
checks at open that they are there with the configured `dims`. On SQLite the
store creates them when opened, after checking that sqlite3 can load
sqlite-vec. Without "index" nothing of this runs.
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
from store.index import (
    StoreConfigError,
    StoreSetupError,
    parse_index,
    pgvector_problem,
    resolve_embed,
    sqlite_vec_problem,
)

_lock = threading.Lock()
_store: BaseStore | None = None

TTL_KEYS = {"default_ttl", "refresh_on_read", "sweep_interval_minutes"}


@cache
def store_config() -> dict[str, Any]:
    """`langgraph.json`'s "store" object ({} when absent), checked."""
    with Path(settings.LANGGRAPH_CONFIG).open() as fh:
        config = json.load(fh).get("store") or {}
    if not isinstance(config, dict):
        raise StoreConfigError('"store" in langgraph.json must be an object')
    ttl = config.get("ttl") or {}
    if not isinstance(ttl, dict) or set(ttl) - TTL_KEYS:
        raise StoreConfigError(f'"store.ttl" in langgraph.json takes only {sorted(TTL_KEYS)}')
    if config.get("index") is not None:
        config = {**config, "index": parse_index(config["index"])}
    return config


def index_config() -> dict[str, Any] | None:
    """`store.index` for LangGraph's stores, `embed` loaded as an Embeddings
    (None without an index)."""
    index = store_config().get("index")
    if index is None:
        return None
    base = Path(settings.LANGGRAPH_CONFIG).resolve().parent
    return {**index, "embed": resolve_embed(index["embed"], base)}


def ttl_config() -> TTLConfig | None:
    """langgraph.json's `store.ttl`, with `refresh_on_read` true unless it says
    otherwise: LangGraph documents that default, and PostgresStore applies it,
    but SqliteStore reads a missing key as false (so a read asking
    `refresh_ttl` would refresh on PostgreSQL and not on the embedded default)."""
    ttl = store_config().get("ttl")
    return TTLConfig(**{"refresh_on_read": True, **ttl}) if ttl else None


def _is_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def _postgres_connect() -> Any:
    import psycopg  # noqa: PLC0415 - the PostgreSQL driver, only on PostgreSQL
    from psycopg.rows import dict_row  # noqa: PLC0415 - ditto

    return psycopg.connect(checkpointer.postgres_conninfo(), autocommit=True, row_factory=dict_row)


def setup_postgres_tables() -> None:
    """Create or migrate the PostgresStore's tables (run by a Django migration);
    the vector tables are setup_index_tables'."""
    from langgraph.store.postgres import PostgresStore  # noqa: PLC0415 - PostgreSQL only

    with _postgres_connect() as conn:
        PostgresStore(conn).setup()


def setup_index_tables(plan: Any = None, **_: Any) -> None:
    """After `migrate` (post_migrate; not after a test flush, which has no
    plan): with `store.index`, the extension checked and, on PostgreSQL, the
    store's vector tables created. Nothing without an index."""
    if plan is None:
        return
    index = index_config()
    if index is None:
        return
    if not _is_postgres():
        problem = sqlite_vec_problem()
        if problem:
            raise StoreSetupError(problem)
        return  # SqliteStore creates its tables when opened (get_store)
    from langgraph.store.postgres import PostgresStore  # noqa: PLC0415 - PostgreSQL only

    with _postgres_connect() as conn:
        problem = pgvector_problem(conn)
        if problem:
            raise StoreSetupError(problem)
        PostgresStore(conn, index=index).setup()  # type: ignore[arg-type]


def _check_postgres_index(dims: int) -> None:
    """The store's vector tables are there, for `dims`-dimension vectors."""
    with _postgres_connect() as conn:
        problem = pgvector_problem(conn)
        if problem:
            raise StoreConfigError(problem)
        row = conn.execute(
            "SELECT format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass('store_vectors') AND a.attname = 'embedding'"
        ).fetchone()
    if row is None:
        raise StoreConfigError(
            '"store.index" is configured but the store\'s vector tables are not there yet: '
            "run `python manage.py migrate` (it creates them)."
        )
    if row["type"] not in (f"vector({dims})", f"halfvec({dims})"):
        raise StoreConfigError(
            f"The store's vectors are {row['type']}, but store.index.dims is {dims}. "
            "Changing dims needs a new vector table: drop store_vectors and "
            "vector_migrations, run `python manage.py migrate`, and put the items again "
            "to re-embed them."
        )


def get_store() -> BaseStore:
    """This process's store (opened on first use)."""
    global _store
    if _store is not None:
        return _store
    with _lock:
        if _store is not None:
            return _store
        index = index_config()
        if _is_postgres():
            from langgraph.store.postgres import PostgresStore  # noqa: PLC0415 - PostgreSQL only

            if index is not None:
                _check_postgres_index(index["dims"])
            # The checkpointer's pool: the store adds no connections to the budget.
            _store = PostgresStore(
                checkpointer.get_saver().conn,
                index=index,  # type: ignore[arg-type]
                ttl=ttl_config(),
            )
        else:
            if index is not None:
                problem = sqlite_vec_problem()
                if problem:
                    raise StoreConfigError(problem)
            from langgraph.store.sqlite import SqliteStore  # noqa: PLC0415 - SQLite only

            conn = sqlite3.connect(
                str(settings.DATA_DIR / "store.sqlite3"),
                check_same_thread=False,
                timeout=30,
                isolation_level=None,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            _store = SqliteStore(conn, index=index, ttl=ttl_config())  # type: ignore[arg-type]
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
