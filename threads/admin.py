"""Threads for operators: read-only (the API writes them), with their crons and
their runs (newest first, paginated) on the thread page."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils.html import format_html_join

from crons.models import Cron
from runs.admin import ViewOnlyAdmin, admin_link, runs_table_context
from runs.models import Run
from runs.selectors import run_list
from threads.models import Thread


def _count(model, fk: str):
    rows = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk)
    return Coalesce(
        Subquery(rows.annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()), 0
    )


@admin.register(Thread)
class ThreadAdmin(ViewOnlyAdmin):
    list_display = (
        "thread_id",
        "status",
        "graph_id",
        "cron_count",
        "run_count",
        "created_at",
        "updated_at",
    )
    list_filter = ("status", "graph_id")
    search_fields = ("thread_id", "graph_id")
    ordering = ("-created_at",)
    fields = (
        "thread_id",
        "status",
        "graph_id",
        "crons_list",
        "metadata",
        "values",
        "created_at",
        "updated_at",
        "ttl_strategy",
        "ttl_minutes",
        "expires_at",
    )

    def get_queryset(self, request):
        # Correlated counts: evaluated for the rows of the page only.
        return (
            super()
            .get_queryset(request)
            .annotate(n_crons=_count(Cron, "thread"), n_runs=_count(Run, "thread"))
        )

    @admin.display(description="crons", ordering="n_crons")
    def cron_count(self, thread: Thread) -> int:
        return thread.n_crons

    @admin.display(description="runs", ordering="n_runs")
    def run_count(self, thread: Thread) -> int:
        return thread.n_runs

    @admin.display(description="crons")
    def crons_list(self, thread: Thread):
        crons = Cron.objects.filter(thread=thread).order_by("-created_at")
        if not crons:
            return "-"
        return format_html_join(
            ", ", "{}", ((admin_link(c, f"{c.schedule} ({c.timezone or 'UTC'})"),) for c in crons)
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        thread = self.get_object(request, object_id)
        if thread is not None:
            extra_context.update(runs_table_context(request, run_list(thread=thread)))
        return super().change_view(request, object_id, form_url, extra_context)
