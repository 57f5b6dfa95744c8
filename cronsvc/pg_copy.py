"""Rows for PostgreSQL's `COPY ... FROM STDIN` in its text format, written by
the caller as lines: psycopg's `write_row` adapts each value on its own
(~15 µs a row here), a formatted line costs a few."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

NULL = r"\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(text: str) -> str:
    """A string as one field (backslash, tab and line breaks escaped)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def copy_field(value: object) -> str:
    """One field: None, bool, datetime (ISO with offset), str, or anything
    whose str() is its SQL text (int, UUID)."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return copy_text(value)
    return str(value)


def copy_lines(cursor, statement: str, lines: Iterable[str], *, per_write: int = 2000) -> None:
    """Run `statement` (a COPY ... FROM STDIN) on the psycopg 3 `cursor`,
    sending `lines` (each ending in a newline) `per_write` at a time."""
    with cursor.copy(statement) as copy:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= per_write:
                copy.write("".join(batch))
                batch.clear()
        if batch:
            copy.write("".join(batch))


def reserve_ids(cursor, table: str, count: int) -> list[int]:
    """`count` ids from `table.id`'s sequence, for rows a COPY will insert (it
    returns none). One round trip, one text value."""
    if not count:
        return []
    # The sequence looked up once (MATERIALIZED), not once a row: 6x faster.
    cursor.execute(
        "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq) "
        "SELECT string_agg(nextval(s.seq)::text, ',') FROM s, generate_series(1, %s)",
        [table, count],
    )
    return [int(pk) for pk in cursor.fetchone()[0].split(",")]


def replica_copy_allowed(cursor, tables: list[str], handled: set[str]) -> bool:
    """Whether a COPY into `tables` may run with `session_replication_role =
    replica`, which skips their triggers: the per-row foreign-key checks
    PostgreSQL queues for commit among them (~40% of a large import; each
    also locks the row it finds, a WAL record when the row is new). True when
    the role may set it (a superuser: cronsvc's compose database user is
    one), it is `origin` now, and every enabled user trigger on the tables is
    in `handled` and fires on origin only: the caller then does what those
    triggers and the foreign keys would have done (bulk checks that lock the
    rows referenced, counters), and restores the role after its COPYs."""
    cursor.execute(
        "SELECT current_setting('is_superuser') = 'on', "
        "current_setting('session_replication_role') = 'origin', "
        "ARRAY(SELECT tgname || ':' || tgenabled::text FROM pg_trigger "
        "WHERE tgrelid = ANY(%s::regclass[]) AND NOT tgisinternal AND tgenabled <> 'D')",
        [tables],
    )
    superuser, origin, triggers = cursor.fetchone()
    return superuser and origin and all(t in {f"{name}:O" for name in handled} for t in triggers)


def replica_role(cursor, on: bool) -> None:
    """Set session_replication_role for the rest of the transaction (or of
    the savepoint: rolled back with it): `replica` (triggers off) or back to
    `origin`."""
    cursor.execute(
        "SELECT set_config('session_replication_role', %s, true)", ["replica" if on else "origin"]
    )


def lock_keys(cursor, table: str, column: str, keys: list) -> bool:
    """Lock the rows of `table` whose `column` is one of `keys` FOR KEY SHARE
    (none can be deleted or have its key changed before commit), in key order,
    in one statement: what a foreign key's check does for each referencing row,
    for a COPY without them. False when one of them is gone."""
    wanted = sorted(set(keys))
    if not wanted:
        return True
    cursor.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {column} = ANY(%s) "  # noqa: S608
        f"ORDER BY {column} FOR KEY SHARE) AS locked",
        [wanted],
    )
    return cursor.fetchone()[0] == len(wanted)
