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
                kwargs={
                    "autocommit": True,
                    "row_factory": dict_row,
                    "prepare_threshold": 0 if settings.CRONSVC_CHECKPOINTER_PREPARE else None,
                },
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


def delete_threads(thread_ids: list[str]) -> None:
    """delete_thread for many threads: on PostgreSQL LangGraph's own
    `prune(strategy="delete")`, one transaction for all of them."""
    saver = get_saver()
    if hasattr(saver, "prune") and _is_postgres():
        saver.prune([str(t) for t in thread_ids], strategy="delete")
        return
    for thread_id in thread_ids:
        delete_thread(thread_id)


def delete_thread(thread_id: str) -> None:
    get_saver().delete_thread(str(thread_id))


def copy_thread(source_thread_id: str, target_thread_id: str) -> int:
    """Copy every checkpoint (all namespaces, oldest first, parents kept) and
    its pending writes from one thread to another, through the saver's own
    `list`/`put`/`put_writes` (LangGraph's savers here implement no
    `copy_thread`). Returns how many checkpoints were copied."""
    saver = get_saver()
    tuples = list(saver.list({"configurable": {"thread_id": str(source_thread_id)}}))
    # Newest first from list(); ids sort by time within a namespace.
    tuples.sort(key=lambda t: t.config["configurable"]["checkpoint_id"])
    for item in tuples:
        ns = item.config["configurable"].get("checkpoint_ns", "")
        parent = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        target = {
            "configurable": {
                "thread_id": str(target_thread_id),
                "checkpoint_ns": ns,
                **({"checkpoint_id": parent} if parent else {}),
            }
        }
        written = saver.put(
            target,
            item.checkpoint,
            item.metadata,
            dict(item.checkpoint.get("channel_versions") or {}),
        )
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in item.pending_writes or ():
            by_task.setdefault(task_id, []).append((channel, value))
        for task_id, writes in by_task.items():
            saver.put_writes(written, writes, task_id)
    return len(tuples)


def prune_keep_latest(thread_ids: list[str]) -> None:
    """Keep only the latest checkpoint of each namespace of these threads:
    LangGraph's own `prune` on PostgreSQL; on SQLite (whose saver has none)
    the older checkpoints and their writes are deleted from its file."""
    saver = get_saver()
    if _is_postgres():
        saver.prune([str(t) for t in thread_ids], strategy="keep_latest")
        return
    with saver.lock, saver.conn:
        for thread_id in map(str, thread_ids):
            for (ns,) in saver.conn.execute(
                "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?", (thread_id,)
            ).fetchall():
                (latest,) = saver.conn.execute(
                    "SELECT max(checkpoint_id) FROM checkpoints "
                    "WHERE thread_id = ? AND checkpoint_ns = ?",
                    (thread_id, ns),
                ).fetchone()
                for table in ("writes", "checkpoints"):
                    saver.conn.execute(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "  # noqa: S608 - table from a fixed pair
                        "AND checkpoint_id <> ?",
                        (thread_id, ns, latest),
                    )


# What one thread occupies in PostgresSaver's tables, as stored (pg_column_size:
# after compression), by section; one round trip, each part through its table's
# primary key (thread_id first).
_PG_STORAGE_SQL = """
SELECT 'checkpoints', NULL, count(*),
       coalesce(sum(coalesce(pg_column_size(checkpoint), 0)
                    + coalesce(pg_column_size(metadata), 0)), 0)
FROM checkpoints WHERE thread_id = %(t)s
UNION ALL
SELECT 'channel', channel, count(*), coalesce(sum(coalesce(pg_column_size(blob), 0)), 0)
FROM checkpoint_blobs WHERE thread_id = %(t)s GROUP BY channel
UNION ALL
SELECT 'writes', NULL, count(*), coalesce(sum(coalesce(pg_column_size(blob), 0)), 0)
FROM checkpoint_writes WHERE thread_id = %(t)s
"""

_SQLITE_STORAGE_SQL = {
    "checkpoints": "SELECT count(*), coalesce(sum(coalesce(length(checkpoint), 0)"
    " + coalesce(length(metadata), 0)), 0) FROM checkpoints WHERE thread_id = ?",
    "writes": "SELECT count(*), coalesce(sum(coalesce(length(value), 0)), 0)"
    " FROM writes WHERE thread_id = ?",
}


def thread_storage(thread_id: str) -> dict[str, Any]:
    """`GET /threads/{id}/storage`: the bytes a thread's checkpoints occupy in
    LangGraph's saver, as stored — checkpoint rows (checkpoint and metadata),
    channel values (one row per channel version) and pending writes. SqliteSaver
    (the embedded default) keeps channel values inside each checkpoint row:
    they count there, and `channel_values` is empty."""
    sections = {"checkpoints": [0, 0], "writes": [0, 0]}
    by_channel: dict[str, dict[str, int]] = {}
    if _is_postgres():
        with connections["default"].cursor() as cursor:
            cursor.execute(_PG_STORAGE_SQL, {"t": str(thread_id)})
            for section, channel, count, size in cursor.fetchall():
                if section == "channel":
                    by_channel[channel] = {"versions": int(count), "bytes": int(size)}
                else:
                    sections[section] = [int(count), int(size)]
    else:
        saver = get_saver()  # creates the file's tables
        with saver.lock:
            for section, sql in _SQLITE_STORAGE_SQL.items():
                count, size = saver.conn.execute(sql, (str(thread_id),)).fetchone()
                sections[section] = [int(count), int(size)]
    channels = {
        "count": sum(c["versions"] for c in by_channel.values()),
        "bytes": sum(c["bytes"] for c in by_channel.values()),
        "by_channel": by_channel,
    }
    checkpoints = dict(zip(("count", "bytes"), sections["checkpoints"], strict=True))
    writes = dict(zip(("count", "bytes"), sections["writes"], strict=True))
    return {
        "thread_id": str(thread_id),
        "total_bytes": checkpoints["bytes"] + channels["bytes"] + writes["bytes"],
        "checkpoints": checkpoints,
        "channel_values": channels,
        "pending_writes": writes,
    }
