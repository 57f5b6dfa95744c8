"""Runs for operators: read-only (runs are made by the API and by ticks), with
a cancel action through `runs.lifecycle.run_cancel`."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from runs.lifecycle import run_cancel
from runs.models import Run

RUNS_PER_PAGE = 10
RUNS_PAGE_PARAM = "runs_page"


def runs_table_context(request: HttpRequest, runs: QuerySet[Run]) -> dict:
    """One page of `runs` (newest first) for the runs table on the cron and
    thread pages; the page number comes from `?runs_page=`."""
    paginator = Paginator(runs.select_related("thread", "cron"), RUNS_PER_PAGE)
    page = paginator.get_page(request.GET.get(RUNS_PAGE_PARAM))
    return {"runs_page": page, "runs_page_param": RUNS_PAGE_PARAM}


def duration_text(run: Run) -> str:
    if run.duration is None:
        return "-"
    seconds = run.duration.total_seconds()
    return f"{seconds:.2f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def admin_link(obj, label: str | None = None) -> str:
    """A link to `obj`'s admin page, or "-"."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj.pk))


class ViewOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only: the admin shows them, never edits them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HasCronFilter(admin.SimpleListFilter):
    title = "origin"
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return [("cron", "cron tick"), ("api", "API")]

    def queryset(self, request, queryset):
        if self.value() == "cron":
            return queryset.filter(cron__isnull=False)
        if self.value() == "api":
            return queryset.filter(cron__isnull=True)
        return queryset


@admin.register(Run)
class RunAdmin(ViewOnlyAdmin):
    list_display = (
        "run_id",
        "status",
        "cron_link",
        "thread_link",
        "assistant",
        "scheduled_at",
        "started_at",
        "finished_at",
        "duration_display",
        "short_error",
    )
    list_filter = ("status", HasCronFilter, "assistant", "webhook_status")
    search_fields = ("run_id", "thread__thread_id", "cron__cron_id")
    list_select_related = ("thread", "cron", "assistant")
    ordering = ("-created_at", "-run_id")
    date_hierarchy = "created_at"
    actions = ("cancel_runs",)
    fieldsets = (
        (None, {"fields": ("run_id", "status", "cron_link", "thread_link", "assistant_link")}),
        (
            "Timing",
            {
                "fields": (
                    "scheduled_at",
                    "not_before",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "duration_display",
                    "attempts",
                    "failure_attempts",
                )
            },
        ),
        ("Outcome", {"fields": ("error", "output", "cancel_action")}),
        (
            "Webhook",
            {
                "fields": (
                    "webhook_url",
                    "webhook_status",
                    "webhook_attempts",
                    "webhook_status_code",
                    "webhook_error",
                    "webhook_sent_at",
                )
            },
        ),
        ("Request", {"fields": ("multitask_strategy", "on_completion", "kwargs", "metadata")}),
    )

    def has_cancel_permission(self, request) -> bool:
        # Runs are read-only here, but an operator with the change permission
        # may cancel them (through run_cancel).
        return request.user.has_perm("runs.change_run")

    @admin.display(description="cron")
    def cron_link(self, run: Run):
        return admin_link(run.cron, run.cron.schedule if run.cron else None)

    @admin.display(description="thread")
    def thread_link(self, run: Run):
        return admin_link(run.thread)

    @admin.display(description="assistant")
    def assistant_link(self, run: Run):
        return admin_link(run.assistant, str(run.assistant) if run.assistant else None)

    @admin.display(description="webhook URL")
    def webhook_url(self, run: Run) -> str:
        return (run.kwargs or {}).get("webhook") or "-"

    @admin.display(description="duration")
    def duration_display(self, run: Run) -> str:
        return duration_text(run)

    @admin.display(description="error")
    def short_error(self, run: Run) -> str:
        return (run.error or "")[:80] or "-"

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        active = [run for run in queryset if run.status not in Run.FINISHED]
        for run in active:
            run_cancel(run=run, action="interrupt")
        self.message_user(
            request,
            f"Cancellation requested for {len(active)} run(s); "
            f"{queryset.count() - len(active)} already finished.",
            messages.SUCCESS,
        )
