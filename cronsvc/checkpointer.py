"""LangGraph's own checkpointers, connected to Django's database.

One saver per process, opened on first use: on PostgreSQL a
`PostgresSaver` over a psycopg 3 connection pool to the same database Django
uses; on SQLite a `SqliteSaver` on its own file beside the database.
Worker processes reset it after fork (see cronsvc.celery).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from django.conf import settings
from django.db import connections

_lock = threading.Lock()
_saver: Any = None
_pool: Any = None


def _is_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def postgres_conninfo() -> str:
    """A libpq conninfo for the database Django is using now (the test one in tests)."""
    from psycopg.conninfo import make_conninfo

    sd = connections["default"].settings_dict
    params = {
        "dbname": sd.get("NAME"),
        "user": sd.get("USER") or None,
        "password": sd.get("PASSWORD") or None,
        "host": sd.get("HOST") or None,
        "port": str(sd["PORT"]) if sd.get("PORT") else None,
    }
    return make_conninfo(**{k: v for k, v in params.items() if v})


def sqlite_connection() -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(settings.CRONSVC_SQLITE_CHECKPOINTS), check_same_thread=False, timeout=30
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def setup_postgres_tables() -> None:
    """Create or migrate the PostgresSaver's tables (run by a Django migration)."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with psycopg.connect(postgres_conninfo(), autocommit=True, row_factory=dict_row) as conn:
        PostgresSaver(conn).setup()


def get_saver() -> Any:
    global _saver, _pool
    if _saver is not None:
        return _saver
    with _lock:
        if _saver is not None:
            return _saver
        if _is_postgres():
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            _pool = ConnectionPool(
                postgres_conninfo(),
                min_size=1,
                max_size=settings.CRONSVC_CHECKPOINTER_POOL_SIZE,
                kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
                open=True,
            )
            _saver = PostgresSaver(_pool)
        else:
            from langgraph.checkpoint.sqlite import SqliteSaver

            _saver = SqliteSaver(sqlite_connection())
            _saver.setup()
        return _saver


def reset() -> None:
    """Forget this process's saver (after a fork, or when the database changes)."""
    global _saver, _pool
    with _lock:
        if _pool is not None:
            try:
                _pool.close()
            except Exception:  # noqa: BLE001 - a pool inherited across fork may not close
                pass
        _saver = None
        _pool = None


def delete_thread(thread_id: str) -> None:
    get_saver().delete_thread(str(thread_id))
