import uuid

from django.db import models


class Run(models.Model):
    """One execution of an assistant on a thread (from the API or a cron tick)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        ERROR = "error"
        SUCCESS = "success"
        TIMEOUT = "timeout"
        INTERRUPTED = "interrupted"

    class MultitaskStrategy(models.TextChoices):
        REJECT = "reject"
        INTERRUPT = "interrupt"
        ROLLBACK = "rollback"
        ENQUEUE = "enqueue"

    class WebhookStatus(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        REFUSED = "refused"

    FINISHED = (Status.ERROR, Status.SUCCESS, Status.TIMEOUT, Status.INTERRUPTED)

    run_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey("threads.Thread", on_delete=models.CASCADE, related_name="runs")
    assistant = models.ForeignKey(
        "cronsvc.Assistant", on_delete=models.SET_NULL, null=True, related_name="runs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    metadata = models.JSONField(default=dict, blank=True)
    # What the run executes: input, config, context, interrupt_before/after,
    # durability, stream options, webhook... as sent by the client.
    kwargs = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(
        max_length=16, choices=MultitaskStrategy.choices, default=MultitaskStrategy.ENQUEUE
    )
    # "delete": a stateless run's thread is removed after it finishes.
    on_completion = models.CharField(max_length=8, null=True, blank=True)
    cron = models.ForeignKey(
        "crons.Cron", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # No worker claims the run (nor a later run of its thread) before this: a
    # jittered cron tick's run (its instant plus the cron's jitter offset;
    # scheduled_at stays the instant, the exactly-once key), or a run waiting
    # out its retry backoff (runs.lifecycle). Null: from scheduled_at (or at once).
    not_before = models.DateTimeField(null=True, blank=True)
    # A buffered cron tick's run (overlap_policy buffer_one/buffer_all): no
    # worker claims it while this run is pending or running (runs.lifecycle).
    # Not a foreign key: that run may be deleted (then nothing is waited for).
    after_run_id = models.UUIDField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    # Created through a stream endpoint (or with stream_resumable), or started
    # while a thread stream was open on its thread (the executor sets it then):
    # the worker records what the graph streams as RunEvent rows, which the
    # stream and join_stream endpoints relay as server-sent events.
    streamed = models.BooleanField(default=False)
    # Set by cancel; the executor checks it between graph steps.
    cancel_action = models.CharField(max_length=16, null=True, blank=True)
    # Claims of the run: the lease's fencing token (every attempt counts).
    attempts = models.PositiveIntegerField(default=0)
    # Attempts that ended in error or timeout (its cron's retry_policy), apart
    # from those whose worker was lost: attempts - failure_attempts is what
    # CRONSVC_RUN_MAX_ATTEMPTS bounds (runs.leases).
    failure_attempts = models.PositiveIntegerField(default=0, db_default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    # Held by the worker executing the run, renewed while the graph runs; a
    # running run whose lease expired lost its worker (see runs.leases).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Delivery of kwargs["webhook"] after the run finished (see runs.webhooks).
    webhook_status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, null=True, blank=True
    )
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_status_code = models.PositiveIntegerField(null=True, blank=True)
    webhook_error = models.TextField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not a column: whether a thread stream was open on the run's thread when
    # it was claimed (runs.lifecycle's PostgreSQL claim reads it in its
    # statement; None: not known, runs.executor.stream_modes asks).
    thread_watched: bool | None = None

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["thread", "status", "created_at"], name="run_thread_status"),
            models.Index(fields=["status", "created_at"], name="run_status_created"),
            # The reaper's scan: running runs by lease expiry.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="running"),
                name="run_lease_expiry",
            ),
            # Retention: finished runs by age.
            models.Index(
                fields=["finished_at"],
                condition=models.Q(finished_at__isnull=False),
                name="run_finished_at",
            ),
            # A cron's active runs: what its overlap policy looks at (crons.dispatch).
            models.Index(
                fields=["cron"],
                condition=models.Q(status__in=["pending", "running"], cron__isnull=False),
                name="run_cron_active",
            ),
            # The runs waiting for a given run (woken when it finishes).
            models.Index(
                fields=["after_run_id"],
                condition=models.Q(after_run_id__isnull=False),
                name="run_after_run",
            ),
            # The reconciler's scan for stateless threads left behind: only
            # stateless runs whose thread still exists are in it (normally few).
            models.Index(
                fields=["finished_at"],
                condition=models.Q(on_completion="delete"),
                name="run_stateless_finished",
            ),
        ]
        constraints = [
            # At most one run per (cron, scheduled instant).
            models.UniqueConstraint(
                fields=["cron", "scheduled_at"],
                condition=models.Q(cron__isnull=False, scheduled_at__isnull=False),
                name="run_unique_cron_tick",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["pending", "running", "error", "success", "timeout", "interrupted"]
                ),
                name="run_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} ({self.status})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class RunEvent(models.Model):
    """One chunk a streamed run's graph produced, in order (the id is the SSE
    event id a client resumes from with Last-Event-ID). Deleted with its run."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    # The SSE event name: the stream mode ("values", "updates", "messages"...),
    # with "|"-separated subgraph namespaces when stream_subgraphs is on.
    event = models.CharField(max_length=255)
    data = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["run", "id"], name="run_event_run_id")]

    def __str__(self) -> str:
        return f"event {self.id} of run {self.run_id} ({self.event})"


class ThreadStream(models.Model):
    """An open `GET /threads/{id}/stream`, registered while its relay runs so
    that the workers (which share only the database with the API) record the
    events of the runs they start on that thread. The relay renews
    `expires_at` with its heartbeats and deletes the row when it ends; a row
    left by a server that died expires by itself."""

    id = models.BigAutoField(primary_key=True)
    thread = models.ForeignKey(
        "threads.Thread", on_delete=models.CASCADE, related_name="open_streams"
    )
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["thread", "expires_at"], name="thread_stream_open")]

    def __str__(self) -> str:
        return f"stream of thread {self.thread_id} (until {self.expires_at})"
