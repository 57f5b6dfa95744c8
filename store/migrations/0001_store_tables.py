"""Create LangGraph's PostgresStore tables in Django's database.

Run through Django so every database Django migrates (the test one too) has
them. Not atomic: the store's own migrations may create indexes concurrently.
On SQLite the store keeps its own file and creates its tables when opened.
"""

from django.db import migrations


def create_store_tables(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from store.backend import setup_postgres_tables  # noqa: PLC0415 - migrations import lazily

    setup_postgres_tables()


class Migration(migrations.Migration):
    atomic = False

    dependencies: list = []

    operations = [
        migrations.RunPython(create_store_tables, migrations.RunPython.noop),
    ]
