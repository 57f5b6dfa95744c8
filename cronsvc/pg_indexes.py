"""Migration operations for PostgreSQL-only indexes (SQLite has no GIN)."""

from __future__ import annotations

from django.db import migrations


def gin_jsonb_index(table: str, column: str, name: str) -> migrations.RunPython:
    """A GIN index with jsonb_path_ops on `table.column`, so the filters of
    cronsvc.filters (`@>` on the column) stay index scans at millions of rows.
    Nothing on SQLite."""

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            quote = schema_editor.quote_name
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} "
                f"USING gin ({quote(column)} jsonb_path_ops)"
            )

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    return migrations.RunPython(forward, backward)


def gin_without_pending_list(name: str) -> migrations.RunPython:
    """Turn off `fastupdate` on the GIN index `name` and merge what its
    pending list holds. With it on (PostgreSQL's default), new entries wait
    in an unsorted pending list until a vacuum (or 4 MB of them) merges them,
    and every search through the index reads the whole list: after 10,000
    crons were created, counting one owner's 100 through the index took
    0.3 ms instead of 0.07. Off, each insert or update of the column writes
    its entries into the index at once (a few microseconds more a row).
    Nothing on SQLite."""

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            quote = schema_editor.quote_name
            schema_editor.execute(f"ALTER INDEX IF EXISTS {quote(name)} SET (fastupdate = off)")
            schema_editor.execute(
                "SELECT gin_clean_pending_list(oid) FROM pg_class WHERE relname = %s "
                "AND relkind = 'i'",
                [name],
            )

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            quote = schema_editor.quote_name
            schema_editor.execute(f"ALTER INDEX IF EXISTS {quote(name)} RESET (fastupdate)")

    return migrations.RunPython(forward, backward)
