"""The crons' metadata GIN index without a pending list (fastupdate off).

Every filtered cron search and count goes through this index: a metadata
filter, and with custom auth the handler's filter on every request (the
owner-only recipe). With PostgreSQL's default, entries for new crons wait in
the index's pending list until autovacuum merges them, and each of those
searches reads the whole list; see cronsvc.pg_indexes.gin_without_pending_list.
"""

from django.db import migrations

from cronsvc.pg_indexes import gin_without_pending_list


class Migration(migrations.Migration):
    dependencies = [("crons", "0011_failure_policies")]

    operations = [gin_without_pending_list("cron_metadata_gin")]
