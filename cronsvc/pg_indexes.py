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
