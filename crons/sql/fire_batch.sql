-- Fire a batch of due crons in one statement (crons.dispatch.fire_batch_postgres).
--
-- Its one parameter, specs, is a jsonb array with one object per tick: the
-- values of a crons.dispatch.RunSpec, decided in Python by run_spec. Nothing
-- about the run is computed here; the statement allocates ids and writes, for
-- each tick:
--   - a new busy thread (stateless crons), or the cron's thread stamped busy,
--     with the spec's graph_id and thread_metadata merged in;
--   - a fired scheduled tick pointing at the run (fire_at: its instant, or
--     its not_before when the cron has a jitter);
--   - a pending run (not_before: null without a jitter).
-- Raises a unique violation when any (cron, scheduled_at) tick (of an instant:
-- not a manual one) or run exists.
-- The OTHER_RUN_COLUMNS / OTHER_RUN_VALUES markers of the run insert are
-- filled in by the loader with every other Run column and its model default.
WITH spec AS MATERIALIZED (
    SELECT s.*,
           COALESCE(s.thread_id, gen_random_uuid()) AS run_thread_id,
           gen_random_uuid() AS run_id
    FROM jsonb_to_recordset(%(specs)s::jsonb) AS s(
        cron_id uuid,
        scheduled_at timestamptz,
        assistant_id uuid,
        graph_id text,
        thread_id uuid,
        thread_metadata jsonb,
        kwargs jsonb,
        metadata jsonb,
        multitask_strategy text,
        on_completion text,
        not_before timestamptz
    )
), new_threads AS (
    INSERT INTO threads_thread
        (thread_id, metadata, status, "values", graph_id, created_at, updated_at)
    SELECT run_thread_id, thread_metadata, 'busy', NULL, graph_id,
           clock_timestamp(), clock_timestamp()
    FROM spec WHERE thread_id IS NULL
), stamped_threads AS (
    UPDATE threads_thread t
       SET status = 'busy',
           graph_id = spec.graph_id,
           metadata = t.metadata || spec.thread_metadata,
           updated_at = clock_timestamp()
      FROM spec WHERE t.thread_id = spec.thread_id
), new_ticks AS (
    INSERT INTO crons_tick
        (cron_id, scheduled_at, fire_at, kind, status, reason, run_id, created_at)
    SELECT cron_id, scheduled_at, COALESCE(not_before, scheduled_at), 'scheduled', 'fired', '', run_id,
           clock_timestamp()
    FROM spec
)
INSERT INTO runs_run
    (run_id, thread_id, assistant_id, status, metadata, kwargs, multitask_strategy,
     on_completion, cron_id, scheduled_at, not_before, attempts, created_at,
     updated_at/*OTHER_RUN_COLUMNS*/)
SELECT run_id, run_thread_id, assistant_id, 'pending', metadata, kwargs, multitask_strategy,
       on_completion, cron_id, scheduled_at, not_before, 0, clock_timestamp(),
       clock_timestamp()/*OTHER_RUN_VALUES*/
FROM spec
RETURNING run_id
