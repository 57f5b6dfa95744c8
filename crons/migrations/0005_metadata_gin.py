from django.db import migrations

from cronsvc.pg_indexes import gin_jsonb_index


class Migration(migrations.Migration):
    dependencies = [("crons", "0004_stateless_on_run_completed")]

    operations = [gin_jsonb_index("crons_cron", "metadata", "cron_metadata_gin")]
