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
    cursor.execute(
        "SELECT string_agg(nextval(pg_get_serial_sequence(%s, 'id'))::text, ',') "
        "FROM generate_series(1, %s)",
        [table, count],
    )
    return [int(pk) for pk in cursor.fetchone()[0].split(",")]
