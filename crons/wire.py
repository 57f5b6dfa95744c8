"""Wire formats of crons, as the LangGraph Server sends them."""

from __future__ import annotations

from datetime import datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crons import selectors
from crons.models import Cron
from cronsvc.http.outputs import IsoDateTime, ObjectOut, WireSerializer, iso

CRON_FIELDS = [
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
]


class CronOut(WireSerializer):
    cron_id = serializers.UUIDField()
    assistant_id = serializers.UUIDField()
    thread_id = serializers.UUIDField(allow_null=True, help_text="null: a stateless cron")
    on_run_completed = serializers.ChoiceField(
        choices=["delete", "keep"], allow_null=True, help_text="stateless crons only"
    )
    end_time = IsoDateTime(allow_null=True)
    schedule = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    user_id = serializers.CharField(allow_null=True)
    payload = ObjectOut(help_text="the run's body, as sent")
    next_run_date = serializers.SerializerMethodField()
    metadata = ObjectOut()
    enabled = serializers.BooleanField()

    @extend_schema_field(IsoDateTime(allow_null=True))
    def get_next_run_date(self, cron: Cron) -> str | None:
        next_run: datetime | None = selectors.cron_next_run_date(cron)
        return iso(next_run)


def cron_out(cron: Cron, select: list[str] | None = None) -> dict:
    return CronOut(cron, context={"select": select}).data
