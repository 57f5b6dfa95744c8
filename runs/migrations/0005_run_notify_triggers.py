"""PostgreSQL: a run's status change and its recorded events NOTIFY
`cronsvc_runs` with the run id, so an API process's listener
(runs.waiters) wakes the waits and streams of that run at once instead of
polling. Triggers, so every writer (workers, beat, the reaper, the API) is
covered without code of its own. Nothing on SQLite: the poller is the
notification there."""

from django.db import migrations

# The channel is runs.waiters.CHANNEL.
CREATE = """
CREATE OR REPLACE FUNCTION cronsvc_notify_run_status() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('cronsvc_runs', NEW.run_id::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER cronsvc_run_status_notify
    AFTER UPDATE OF status ON runs_run
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION cronsvc_notify_run_status();

CREATE OR REPLACE FUNCTION cronsvc_notify_run_events() RETURNS trigger AS $$
DECLARE
    changed text;
BEGIN
    FOR changed IN SELECT DISTINCT run_id::text FROM new_events LOOP
        PERFORM pg_notify('cronsvc_runs', changed);
    END LOOP;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER cronsvc_run_events_notify
    AFTER INSERT ON runs_runevent
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION cronsvc_notify_run_events();
"""

DROP = """
DROP TRIGGER IF EXISTS cronsvc_run_events_notify ON runs_runevent;
DROP TRIGGER IF EXISTS cronsvc_run_status_notify ON runs_run;
DROP FUNCTION IF EXISTS cronsvc_notify_run_events();
DROP FUNCTION IF EXISTS cronsvc_notify_run_status();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_stateless_finished_index")]

    operations = [migrations.RunPython(create, drop)]
