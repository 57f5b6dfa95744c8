"""Assistants for operators: read-only (the API and langgraph.json make them)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

from crons.models import Cron
from cronsvc.models import Assistant
from runs.admin import ViewOnlyAdmin

admin.site.site_header = "cronsvc operations"
admin.site.site_title = "cronsvc admin"
admin.site.index_title = "Schedules, runs and what they run"


@admin.register(Assistant)
class AssistantAdmin(ViewOnlyAdmin):
    list_display = ("name", "graph_id", "assistant_id", "version", "cron_count", "created_at")
    list_filter = ("graph_id",)
    search_fields = ("assistant_id", "graph_id", "name")
    ordering = ("graph_id", "name")
    fields = (
        "assistant_id",
        "graph_id",
        "name",
        "description",
        "version",
        "config",
        "context",
        "metadata",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request):
        crons = Cron.objects.filter(assistant=OuterRef("pk")).order_by().values("assistant")
        n_crons = Subquery(
            crons.annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()
        )
        return super().get_queryset(request).annotate(n_crons=Coalesce(n_crons, 0))

    @admin.display(description="crons", ordering="n_crons")
    def cron_count(self, assistant: Assistant) -> int:
        return assistant.n_crons
