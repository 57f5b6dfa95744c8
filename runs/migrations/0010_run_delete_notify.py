"""PostgreSQL: a run's deletion (with its thread, by a prune, by the reaper)
NOTIFYs `cronsvc_runs` with the run id too, as 0005's status changes and
events do, so the listener (runs.waiters) wakes the waits and streams of a
deleted run at once: while it is connected the poll runs only every 2 s.
One notification per run, from a statement-level trigger. Nothing on
SQLite."""

from django.db import migrations

# The channel is runs.waiters.CHANNEL.
CREATE = """
CREATE OR REPLACE FUNCTION cronsvc_notify_run_deleted() RETURNS trigger AS $$
DECLARE
    gone text;
BEGIN
    FOR gone IN SELECT run_id::text FROM old_runs LOOP
        PERFORM pg_notify('cronsvc_runs', gone);
    END LOOP;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER cronsvc_run_deleted_notify
    AFTER DELETE ON runs_run
    REFERENCING OLD TABLE AS old_runs
    FOR EACH STATEMENT
    EXECUTE FUNCTION cronsvc_notify_run_deleted();
"""

DROP = """
DROP TRIGGER IF EXISTS cronsvc_run_deleted_notify ON runs_run;
DROP FUNCTION IF EXISTS cronsvc_notify_run_deleted();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("runs", "0009_failure_retries")]

    operations = [migrations.RunPython(create, drop)]
