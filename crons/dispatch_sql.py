"""Set-based firing of a batch of due crons on PostgreSQL, in one statement.

The batch's threads (stateless crons), ticks and runs are inserted by the
database from the cron rows themselves (data-modifying CTEs), so 10,000 due
crons cost a few statements rather than tens of thousands of ORM objects.
Other backends use the ORM path in crons.ticking.
"""

from __future__ import annotations

from django.db import connection

from crons.models import Cron, Tick
from runs.models import Run
from threads.models import Thread

# Payload keys that describe the cron rather than the run it creates.
EXCLUDED = [
    "assistant_id",
    "schedule",
    "timezone",
    "end_time",
    "enabled",
    "on_run_completed",
    "metadata",
    "multitask_strategy",
]

_RUN_COLUMNS = [
    "run_id",
    "thread_id",
    "assistant_id",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "on_completion",
    "cron_id",
    "scheduled_at",
    "attempts",
    "created_at",
    "updated_at",
]


def _other_run_columns() -> tuple[str, str]:
    """Every other Run column with its model default (or NULL), so the insert
    stays valid when fields are added to Run."""
    names, values = [], []
    for f in Run._meta.concrete_fields:
        if f.column in _RUN_COLUMNS:
            continue
        if f.has_default() and not callable(f.default):
            value = f.get_db_prep_save(f.default, connection)
            values.append(connection.ops.adapt_unknown_value(value) if value is not None else None)
        elif f.null:
            values.append(None)
        else:
            raise TypeError(f"Run.{f.name} needs a value in crons/dispatch_sql.py")
        names.append(f.column)
    cols = "".join(f", {connection.ops.quote_name(n)}" for n in names)
    vals = "".join(", " + ("NULL" if v is None else _literal(v)) for v in values)
    return cols, vals


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql() -> str:
    extra_cols, extra_vals = _other_run_columns()
    return SQL.replace("/*EXTRA_COLS*/", extra_cols).replace("/*EXTRA_VALS*/", extra_vals)


SQL = f"""
WITH due AS (
    SELECT c.cron_id, c.assistant_id, c.thread_id, c.payload, c.next_run_date,
           c.on_run_completed, a.graph_id,
           COALESCE(c.thread_id, gen_random_uuid()) AS run_thread_id,
           gen_random_uuid() AS run_id
    FROM {Cron._meta.db_table} c
    JOIN {Cron._meta.get_field("assistant").related_model._meta.db_table} a
      ON a.assistant_id = c.assistant_id
    WHERE c.cron_id = ANY(%(ids)s)
), new_threads AS (
    INSERT INTO {Thread._meta.db_table}
        (thread_id, metadata, status, "values", graph_id, created_at, updated_at)
    SELECT run_thread_id,
           jsonb_build_object('cron_id', cron_id::text, 'graph_id', graph_id,
                              'assistant_id', assistant_id::text),
           'busy', NULL, graph_id, clock_timestamp(), clock_timestamp()
    FROM due WHERE thread_id IS NULL
), busy_threads AS (
    UPDATE {Thread._meta.db_table} t
       SET status = 'busy', graph_id = COALESCE(t.graph_id, due.graph_id)
      FROM due WHERE t.thread_id = due.thread_id
), new_ticks AS (
    INSERT INTO {Tick._meta.db_table} (cron_id, scheduled_at, status, reason, run_id, created_at)
    SELECT cron_id, next_run_date, 'fired', '', run_id, clock_timestamp() FROM due
)
INSERT INTO {Run._meta.db_table}
    (run_id, thread_id, assistant_id, status, metadata, kwargs, multitask_strategy,
     on_completion, cron_id, scheduled_at, attempts, created_at, updated_at/*EXTRA_COLS*/)
SELECT run_id, run_thread_id, assistant_id, 'pending',
       COALESCE(payload->'metadata', '{{}}'::jsonb) || jsonb_build_object('cron_id', cron_id::text),
       payload - %(excluded)s::text[], 'enqueue',
       CASE WHEN thread_id IS NULL THEN COALESCE(on_run_completed, 'delete') END,
       cron_id, next_run_date, 0, clock_timestamp(), clock_timestamp()/*EXTRA_VALS*/
FROM due
RETURNING run_id
"""


def fire_batch_postgres(cron_ids: list) -> list:
    """Insert ticks and pending runs (and stateless threads) for `cron_ids`,
    each at its next_run_date. Returns the new run ids. Raises IntegrityError
    when any of those ticks exists already."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(), {"ids": list(cron_ids), "excluded": EXCLUDED})
        return [row[0] for row in cursor.fetchall()]
