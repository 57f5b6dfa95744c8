import uuid

from django.db import models


class Thread(models.Model):
    """A conversation. Its state lives in LangGraph's checkpointer, keyed by thread_id;
    `values` keeps a copy of the latest values for listing and search."""

    class Status(models.TextChoices):
        IDLE = "idle"
        BUSY = "busy"
        INTERRUPTED = "interrupted"
        ERROR = "error"

    thread_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    values = models.JSONField(null=True, blank=True)
    graph_id = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Its TTL (`ttl` on create or update, or langgraph.json's checkpointer.ttl):
    # what happens once it expires ("delete", "keep_latest"), after how many
    # minutes without a new run, and when (threads.ttl; swept by runs.sweep_ttl).
    ttl_strategy = models.CharField(max_length=16, null=True, blank=True)
    ttl_minutes = models.FloatField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="thread_expires_at",
                condition=models.Q(expires_at__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return str(self.thread_id)
