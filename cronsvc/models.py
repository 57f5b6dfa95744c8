import uuid

from django.db import models


class Assistant(models.Model):
    """A configured graph. Every registered graph has a default one (see graphs.py)."""

    assistant_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    graph_id = models.CharField(max_length=255, db_index=True)
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or self.graph_id} ({self.assistant_id})"


class AssistantVersion(models.Model):
    """One version of an assistant, as `POST /assistants/{id}/versions` lists
    them: written by each create and update (once for a default assistant,
    however often the service restarts), never changed. `POST
    /assistants/{id}/latest` copies one back onto the assistant."""

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    graph_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["assistant", "version"], name="assistant_version_once")
        ]

    def __str__(self) -> str:
        return f"{self.assistant_id} v{self.version}"


class WorkerHeartbeat(models.Model):
    """A Celery worker's last sign of life, one row per worker node (see cronsvc/heartbeats.py).

    `seen_at` is written with the database's clock, so readers on other hosts
    compare ages without trusting their own clocks."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Celery's node name (celery@host, worker1@host): unique among live workers.
    name = models.CharField(max_length=255, unique=True)
    # The host (container) the worker runs on, for that host's health check.
    hostname = models.CharField(max_length=255, db_index=True)
    pid = models.PositiveIntegerField()
    # Its pool's slots (runs it executes at once); beat wakes as many slots as
    # the live workers have.
    concurrency = models.PositiveIntegerField(default=0)
    # "runs" (executes runs: counted in /health's workers and in the slots beat
    # wakes) or "webhooks" (delivers webhooks on its own queue; cronsvc.celery).
    role = models.CharField(max_length=16, default="runs")
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


class BeatHeartbeat(models.Model):
    """A beat process's last sign of life, active or standby (see cronsvc/heartbeats.py).

    The active beat's liveness is the scheduler lease it renews; this row is
    what shows that a standby, which holds nothing, is alive and ready to take
    over. `seen_at` is on the database's clock."""

    # The beat's lease holder id (host:pid:nonce).
    name = models.CharField(max_length=255, primary_key=True)
    hostname = models.CharField(max_length=255, db_index=True)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"beat {self.name}"


class MetricCounter(models.Model):
    """One shard of one series of a counter `GET /metrics` reports (cronsvc.metrics).

    Incremented in the same transaction as what it counts (a tick written, a
    run finished), so it is right across processes and hosts and never goes
    down when retention deletes the rows it counted. A series is spread over a
    few shards (one per database connection, roughly) so that concurrent
    writers rarely wait on one row; a scrape sums them. `labels` is the
    series' labels as `k=v` pairs joined by commas, in key order."""

    name = models.CharField(max_length=64)
    labels = models.CharField(max_length=255, blank=True, default="")
    shard = models.PositiveSmallIntegerField(default=0)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels", "shard"], name="metric_counter_key")
        ]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}}[{self.shard}] = {self.value}"
