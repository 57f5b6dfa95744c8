"""Indexes that match the searches' default order, and vacuum after imports.

`POST /runs/crons/search` orders by (created_at, cron_id) and filters by
assistant or thread: with these indexes the first page is an index scan that
stops after `limit` rows and a deep offset is skipped in the index, where the
plans showed a sequential scan and a sort of every row. They replace the
single-column indexes on created_at, assistant_id and thread_id (created
first, so the foreign keys always have one).

Counts and deep offsets scan an index only when the table's pages are marked
all-visible, which vacuum does: vacuuming after 1% of the rows were inserted
(PostgreSQL's default waits for 20%) does that soon after an import.
"""

import django.db.models.deletion
from django.db import migrations, models


def tune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE crons_cron SET (autovacuum_vacuum_insert_scale_factor = 0.01, "
            "autovacuum_vacuum_insert_threshold = 1000)"
        )


def untune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE crons_cron RESET (autovacuum_vacuum_insert_scale_factor, "
            "autovacuum_vacuum_insert_threshold)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("crons", "0005_metadata_gin"),
        ("cronsvc", "0006_workerheartbeat_role"),
        ("threads", "0003_metadata_values_gin"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="cron",
            index=models.Index(fields=["created_at", "cron_id"], name="cron_created"),
        ),
        migrations.AddIndex(
            model_name="cron",
            index=models.Index(
                fields=["assistant", "created_at", "cron_id"], name="cron_assistant_created"
            ),
        ),
        migrations.AddIndex(
            model_name="cron",
            index=models.Index(
                condition=models.Q(("thread__isnull", False)),
                fields=["thread", "created_at", "cron_id"],
                name="cron_thread_created",
            ),
        ),
        migrations.AlterField(
            model_name="cron",
            name="assistant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="crons",
                to="cronsvc.assistant",
            ),
        ),
        migrations.AlterField(
            model_name="cron",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True),
        ),
        migrations.AlterField(
            model_name="cron",
            name="thread",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="crons",
                to="threads.thread",
            ),
        ),
        migrations.RunPython(tune, untune),
    ]
