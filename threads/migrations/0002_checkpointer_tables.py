"""Create LangGraph's PostgresSaver tables in Django's database.

Run through Django so every database Django migrates (the test one too) has
them. Not atomic: the saver's own migrations create indexes concurrently.
On SQLite the saver keeps its own file and creates its tables when opened.
"""

from django.db import migrations


def create_checkpointer_tables(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from cronsvc.checkpointer import setup_postgres_tables

    setup_postgres_tables()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("threads", "0001_initial")]

    operations = [
        migrations.RunPython(create_checkpointer_tables, migrations.RunPython.noop),
    ]
