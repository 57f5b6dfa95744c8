from django.db import migrations

from cronsvc.pg_indexes import gin_jsonb_index


class Migration(migrations.Migration):
    dependencies = [("cronsvc", "0004_beatheartbeat")]

    operations = [gin_jsonb_index("cronsvc_assistant", "metadata", "assistant_metadata_gin")]
