import uuid

from django.db import models


class Cron(models.Model):
    """A schedule that creates runs. The source of truth for the scheduler:
    `next_run_date` is the next instant it fires (UTC), read by beat through a
    partial index on enabled crons."""

    class OnRunCompleted(models.TextChoices):
        DELETE = "delete"
        KEEP = "keep"

    class OverlapPolicy(models.TextChoices):
        """What a stateless cron's tick does while an earlier run of the cron
        is pending (at or past its instant) or running (crons.dispatch)."""

        SKIP = "skip"
        BUFFER_ONE = "buffer_one"
        BUFFER_ALL = "buffer_all"
        CANCEL_OTHER = "cancel_other"
        ALLOW_ALL = "allow_all"

    class Catchup(models.TextChoices):
        """Which missed instants within the catch-up window fire (crons.ticking)."""

        LATEST = "latest"  # the newest only (LangGraph's, and Kubernetes')
        ALL = "all"  # every one, in order

    cron_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed with the default sort (Meta.indexes), not on their own.
    assistant = models.ForeignKey(
        "cronsvc.Assistant", on_delete=models.CASCADE, related_name="crons", db_index=False
    )
    thread = models.ForeignKey(
        "threads.Thread",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="crons",
        db_index=False,
    )
    schedule = models.CharField(max_length=255)
    timezone = models.CharField(max_length=64, null=True, blank=True)
    # The run to create at each tick: input, config, context, webhook, ...
    payload = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    # No instant before it fires (set on the first next_run_date).
    start_time = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Stateless crons only (thread crons keep the payload's multitask_strategy).
    # db_default too: imports COPY rows without naming the column.
    overlap_policy = models.CharField(
        max_length=16,
        choices=OverlapPolicy.choices,
        default=OverlapPolicy.ALLOW_ALL,
        db_default=OverlapPolicy.ALLOW_ALL,
    )
    # max_runs: how many scheduled ticks may fire (null: no limit); each fired
    # one counts remaining_runs down, and at 0 the cron disables itself with
    # paused_reason (which re-enabling clears).
    max_runs = models.PositiveIntegerField(null=True, blank=True)
    remaining_runs = models.PositiveIntegerField(null=True, blank=True)
    paused_reason = models.CharField(max_length=255, null=True, blank=True)
    # Missed instants (beat or database down) within catchup_window seconds of
    # now may still fire (null: CRONSVC_MISSED_TICK_GRACE); `catchup` says
    # which: the newest (latest) or every one in order (all). Older ones are
    # recorded skipped (crons.ticking).
    catchup_window = models.PositiveIntegerField(null=True, blank=True)
    catchup = models.CharField(
        max_length=8, choices=Catchup.choices, default=Catchup.LATEST, db_default=Catchup.LATEST
    )
    # Each instant fires up to `jitter` seconds late (null or 0: on time), by
    # an offset derived from (cron, instant), always before the next instant
    # (crons.firetime.jitter_offset); the run waits in `not_before`.
    jitter = models.PositiveIntegerField(null=True, blank=True)
    # Failure policies (crons.retry): a run whose attempt fails is attempted
    # again as retry_policy allows (null: no retry); after
    # max_consecutive_failures of its runs failed in a row the cron disables
    # itself with paused_reason. The last three are written when one of its
    # runs reaches a final status (runs.lifecycle), in that transaction.
    retry_policy = models.JSONField(null=True, blank=True)
    max_consecutive_failures = models.PositiveIntegerField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0, db_default=0)
    last_run_date = models.DateTimeField(null=True, blank=True)
    # The wire's last_run_status (the admin's "last run status" column is
    # its newest run's status, whatever it is).
    last_run_final_status = models.CharField(max_length=16, null=True, blank=True)
    on_run_completed = models.CharField(
        max_length=8, choices=OnRunCompleted.choices, null=True, blank=True
    )
    # The owner (custom auth): the identity that created the cron, and the
    # user as the authenticate handler returned it then (identity,
    # permissions, display_name, extra keys), which its ticks run as.
    user_id = models.CharField(max_length=255, null=True, blank=True)
    owner = models.JSONField(null=True, blank=True)
    next_run_date = models.DateTimeField(null=True, blank=True)
    # The last instant the scheduler handled. When it fires a batch, beat sets
    # next_run_date to null and needs_advance; computing the next fire time
    # (croniter, ~1 ms a cron) happens after the runs are dispatched.
    last_tick_at = models.DateTimeField(null=True, blank=True)
    needs_advance = models.BooleanField(default=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cron",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # The searches' default order is (created_at, cron_id), descending: one
        # index for it alone and one per filter the SDK sends (assistant,
        # thread), so a page is read in index order, a deep offset is skipped in
        # the index (crons.selectors), and a count scans an index only.
        indexes = [
            models.Index(fields=["created_at", "cron_id"], name="cron_created"),
            models.Index(
                fields=["assistant", "created_at", "cron_id"], name="cron_assistant_created"
            ),
            models.Index(
                fields=["thread", "created_at", "cron_id"],
                name="cron_thread_created",
                condition=models.Q(thread__isnull=False),  # stateless crons have none
            ),
            models.Index(
                fields=["next_run_date"],
                name="cron_due",
                condition=models.Q(enabled=True, next_run_date__isnull=False),
            ),
            models.Index(
                fields=["last_tick_at"],
                name="cron_to_advance",
                condition=models.Q(needs_advance=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule} ({self.cron_id})"


class Tick(models.Model):
    """One instant of a cron and what became of it.

    `kind` says what fired it: the schedule (beat), a manual trigger, or a
    backfill of a past instant. Scheduled and backfilled ticks are instants
    of the schedule and share the exactly-once key: unique on (cron,
    scheduled_at) among ticks that are not manual. A manual tick is keyed
    apart (its own row each time), so a trigger never takes the place of a
    scheduled instant and two triggers in one second are two ticks.
    Independent of the run's and thread's lifetime (a stateless cron's thread
    may be deleted)."""

    class Status(models.TextChoices):
        FIRED = "fired"
        SKIPPED = "skipped"
        REJECTED = "rejected"

    class Kind(models.TextChoices):
        SCHEDULED = "scheduled"
        MANUAL = "manual"
        BACKFILL = "backfill"

    # No index of its own: (cron, scheduled_at) below serves lookups by cron.
    cron = models.ForeignKey(Cron, on_delete=models.CASCADE, related_name="ticks", db_index=False)
    # The instant: of the schedule (scheduled, backfill), or the second a
    # manual trigger came.
    scheduled_at = models.DateTimeField()
    # When the tick fires: its instant plus the cron's jitter offset (the
    # run's not_before); a manual tick's exact moment. Null on ticks recorded
    # before it existed.
    fire_at = models.DateTimeField(null=True, blank=True)
    # db_default too: the batch statement (crons/sql/fire_batch.sql) names no kind.
    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.SCHEDULED, db_default=Kind.SCHEDULED
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=255, blank=True, default="")
    run_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-scheduled_at", "-id"]
        indexes = [
            # A cron's ticks newest first (the ticks endpoint, the admin), manual ones included.
            models.Index(fields=["cron", "scheduled_at"], name="tick_cron_instant"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["cron", "scheduled_at"],
                condition=~models.Q(kind="manual"),
                name="tick_unique_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cron_id} @ {self.scheduled_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.status}"


class SchedulerLease(models.Model):
    """Who may run the scheduler: beat renews it each tick; claims check the epoch
    (fencing), so a beat that lost the lease cannot fire."""

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=255)
    epoch = models.PositiveBigIntegerField(default=0)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} (epoch {self.epoch})"
