"""Wire formats of threads and their state, as the LangGraph Server sends them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cronsvc.http.outputs import IsoDateTime, ObjectOut, WireSerializer
from threads import selectors
from threads.models import Thread

THREAD_FIELDS = [
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
]

THREAD_STATUSES = Thread.Status.values


class ThreadOut(WireSerializer):
    thread_id = serializers.UUIDField()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    state_updated_at = IsoDateTime(source="updated_at")
    metadata = ObjectOut()
    config = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=THREAD_STATUSES)
    values = serializers.JSONField(allow_null=True)
    interrupts = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DictField())
    def get_config(self, thread: Thread) -> dict:
        return {}

    @extend_schema_field(serializers.DictField())
    def get_interrupts(self, thread: Thread) -> dict:
        return {}

    @extend_schema_field(
        serializers.CharField(allow_null=True, help_text="the last failed run's error")
    )
    def get_error(self, thread: Thread) -> str | None:
        if thread.status != Thread.Status.ERROR:
            return None
        return selectors.thread_last_error(thread)


def thread_out(thread: Thread, select: list[str] | None = None) -> dict:
    return ThreadOut(thread, context={"select": select}).data


class CheckpointOut(serializers.Serializer):
    thread_id = serializers.CharField(allow_null=True)
    checkpoint_ns = serializers.CharField(allow_blank=True)
    checkpoint_id = serializers.CharField(allow_null=True)
    checkpoint_map = serializers.DictField(allow_null=True)


class ThreadStateOut(serializers.Serializer):
    """A thread's state at a checkpoint (documentation; `threads.state` builds it)."""

    values = serializers.JSONField()
    next = serializers.ListField(child=serializers.CharField())
    tasks = serializers.ListField(child=serializers.DictField())
    metadata = serializers.DictField(allow_null=True)
    created_at = serializers.CharField(allow_null=True)
    checkpoint = CheckpointOut(allow_null=True)
    parent_checkpoint = CheckpointOut(allow_null=True)
    interrupts = serializers.ListField(child=serializers.DictField())
    checkpoint_id = serializers.CharField(allow_null=True)
    parent_checkpoint_id = serializers.CharField(allow_null=True)


class ThreadStateUpdateOut(serializers.Serializer):
    """The checkpoint a state update wrote (documentation)."""

    checkpoint = CheckpointOut()
    configurable = CheckpointOut()
    checkpoint_id = serializers.CharField()


class _CountBytes(serializers.Serializer):
    count = serializers.IntegerField()
    bytes = serializers.IntegerField()


class _ChannelBytes(serializers.Serializer):
    versions = serializers.IntegerField()
    bytes = serializers.IntegerField()


class _ChannelValues(_CountBytes):
    by_channel = serializers.DictField(child=_ChannelBytes())


class ThreadStorageOut(serializers.Serializer):
    """Bytes a thread occupies in the checkpointer, as stored (documentation;
    cronsvc.checkpointer.thread_storage builds it)."""

    thread_id = serializers.UUIDField()
    total_bytes = serializers.IntegerField(help_text="the three sections' sum")
    checkpoints = _CountBytes(help_text="checkpoint rows: the checkpoint and its metadata")
    channel_values = _ChannelValues(
        help_text="channel values, one row per channel version (PostgreSQL; on the "
        "embedded default they are inside the checkpoint rows)"
    )
    pending_writes = _CountBytes(help_text="task writes")
