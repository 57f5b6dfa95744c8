from django.db import migrations

from cronsvc.pg_indexes import gin_jsonb_index


class Migration(migrations.Migration):
    dependencies = [("threads", "0002_checkpointer_tables")]

    operations = [
        gin_jsonb_index("threads_thread", "metadata", "thread_metadata_gin"),
        gin_jsonb_index("threads_thread", "values", "thread_values_gin"),
    ]
