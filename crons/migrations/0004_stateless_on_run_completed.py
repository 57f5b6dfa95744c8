"""Store the stateless default of on_run_completed ("delete") on existing rows.

crons.services now decides it when a cron is created and stores it, and the
tick path reads the stored value instead of falling back to "delete" itself;
stateless crons created before that may have NULL. Thread crons keep NULL.
"""

from django.db import migrations


def store_default(apps, schema_editor):
    Cron = apps.get_model("crons", "Cron")
    Cron.objects.filter(thread__isnull=True, on_run_completed__isnull=True).update(
        on_run_completed="delete"
    )


class Migration(migrations.Migration):
    dependencies = [("crons", "0003_autovacuum")]

    # Not reversed: which rows were NULL is not known, and NULL meant "delete".
    operations = [migrations.RunPython(store_default, migrations.RunPython.noop)]
