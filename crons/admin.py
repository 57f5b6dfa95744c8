"""The operator's cron screens, and django-celery-beat's PeriodicTask admin
with each cron's mirrored task made read-only.

Every write goes through the crons services (`cron_create`, `cron_update`,
`cron_delete`, and `cron_trigger` / `cron_backfill`, the API's trigger and
backfill), so the mirrored PeriodicTask is kept in step in the same
transaction: the cron page is the one way to edit a schedule.
"""

from __future__ import annotations

from datetime import timedelta

import django_celery_beat.admin  # noqa: F401 - registers the admin replaced below
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import OuterRef, Subquery
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone as djtz
from django.utils.html import format_html, format_html_join
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from crons.forms import BackfillForm, CronForm, schedule_description, upcoming_fires
from crons.models import Cron, Tick
from crons.selectors import cron_next_run_date, cron_ticks, tick_run, tick_runs
from crons.services import (
    backfill_instants,
    cron_backfill,
    cron_create,
    cron_delete,
    cron_trigger,
    cron_update,
)
from cronsvc.dbclock import db_now
from cronsvc.errors import Invalid
from runs.admin import admin_link, runs_table_context
from runs.models import Run

RECENT_TICKS = 20


class HasThreadFilter(admin.SimpleListFilter):
    title = "has thread"
    parameter_name = "has_thread"

    def lookups(self, request, model_admin):
        return [("yes", "thread cron"), ("no", "stateless (new thread per run)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(thread__isnull=False)
        if self.value() == "no":
            return queryset.filter(thread__isnull=True)
        return queryset


@admin.register(Cron)
class CronAdmin(admin.ModelAdmin):
    form = CronForm
    list_display = (
        "assistant_link",
        "thread_column",
        "owner_column",
        "schedule",
        "description",
        "timezone_display",
        "enabled",
        "next_run",
        "last_run_status",
    )
    list_display_links = ("schedule",)
    list_filter = ("enabled", ("assistant", admin.RelatedOnlyFieldListFilter), HasThreadFilter)
    search_fields = (
        "cron_id",
        "schedule",
        "assistant__graph_id",
        "assistant__name",
        "thread__thread_id",
        "user_id",
    )
    list_select_related = ("assistant", "thread")
    ordering = ("-created_at",)
    raw_id_fields = ("thread",)
    # Besides the site's "delete selected", which ends in delete_queryset below.
    actions = ("enable_crons", "disable_crons", "trigger", "backfill")
    list_per_page = 50

    # --- pages -------------------------------------------------------------

    def get_queryset(self, request):
        last_status = (
            Run.objects.filter(cron=OuterRef("pk"))
            .order_by("-created_at", "-run_id")
            .values("status")[:1]
        )
        return super().get_queryset(request).annotate(last_run=Subquery(last_status))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return (
                (
                    None,
                    {
                        "fields": (
                            "assistant",
                            "thread",
                            "schedule",
                            "timezone",
                            "enabled",
                            "end_time",
                            "on_run_completed",
                        )
                    },
                ),
                (
                    "Scheduler control",
                    {
                        "fields": (
                            "overlap_policy",
                            "start_time",
                            "max_runs",
                            "catchup_window",
                            "catchup",
                            "jitter",
                            "retry_policy",
                            "max_consecutive_failures",
                        )
                    },
                ),
                ("What each tick runs", {"fields": ("payload", "metadata")}),
            )
        return (
            (
                None,
                {
                    "fields": (
                        "cron_id",
                        "assistant_link",
                        "thread_link",
                        "schedule",
                        "timezone",
                        "enabled",
                        "end_time",
                        "on_run_completed",
                    )
                },
            ),
            (
                "When it fires",
                {"fields": ("description", "next_fires", "next_run", "last_run_status")},
            ),
            (
                "Scheduler control",
                {
                    "fields": (
                        "overlap_policy",
                        "start_time",
                        "max_runs",
                        "remaining_runs",
                        "retry_policy",
                        "max_consecutive_failures",
                        "consecutive_failures",
                        "last_run_date",
                        "last_run_final_status",
                        "paused_reason",
                        "catchup_window",
                        "catchup",
                        "jitter",
                    )
                },
            ),
            ("What each tick runs", {"fields": ("payload", "metadata")}),
            (
                "Bookkeeping",
                {
                    "fields": (
                        "periodic_task_link",
                        "user_id",
                        "owner_permissions",
                        "created_at",
                        "updated_at",
                    )
                },
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Assistant and thread are fixed at creation (as in the API's PATCH);
        # on_run_completed only applies to stateless crons.
        fields = [
            "cron_id",
            "assistant_link",
            "thread_link",
            "description",
            "next_fires",
            "next_run",
            "last_run_status",
            "periodic_task_link",
            "user_id",
            "owner_permissions",
            "created_at",
            "updated_at",
            "remaining_runs",
            "paused_reason",
            "consecutive_failures",
            "last_run_date",
            "last_run_final_status",
        ]
        if obj.thread_id is not None:
            fields += ["on_run_completed", "overlap_policy"]  # thread crons: multitask_strategy
        return fields

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        cron = self.get_object(request, object_id)
        if cron is not None:
            ticks = cron_ticks(cron)
            recent = list(ticks[:RECENT_TICKS])
            # The ticks endpoint's reads: the run's status and attempts while it
            # exists, and fire_at (a tick recorded before it existed: its instant).
            runs = tick_runs(recent)
            for tick in recent:
                tick.run_status, tick.attempts = runs.get(tick.run_id, (None, None))
                tick.fires_at = tick.fire_at or tick.scheduled_at
            extra_context.update(
                ticks=recent,
                ticks_total=ticks.count(),
                existing_run_ids=set(runs),
                **runs_table_context(
                    request, Run.objects.filter(cron=cron).order_by("-created_at", "-run_id")
                ),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    # --- columns and read-only fields --------------------------------------

    @admin.display(description="assistant", ordering="assistant__graph_id")
    def assistant_link(self, cron: Cron):
        return admin_link(cron.assistant, cron.assistant.name or cron.assistant.graph_id)

    @admin.display(description="thread", ordering="thread_id")
    def thread_link(self, cron: Cron):
        if cron.thread_id is None:
            return "- (new thread per run)"
        return admin_link(cron.thread)

    @admin.display(description="thread", ordering="thread_id")
    def thread_column(self, cron: Cron):
        if cron.thread_id is None:
            return "- (new thread per run)"
        return admin_link(cron.thread, f"{str(cron.thread_id)[:8]}…")

    @admin.display(description="owner", ordering="user_id")
    def owner_column(self, cron: Cron) -> str:
        """Who the cron's ticks run as (custom auth); - for crons without an owner."""
        return cron.user_id or "-"

    @admin.display(description="owner's permissions")
    def owner_permissions(self, cron: Cron) -> str:
        """As authenticated when the cron was created: what its ticks run with."""
        permissions = (cron.owner or {}).get("permissions") or []
        return ", ".join(map(str, permissions)) or "-"

    @admin.display(description="description")
    def description(self, cron: Cron) -> str:
        return schedule_description(cron.schedule) or "-"

    @admin.display(description="next run", ordering="next_run_date")
    def next_run(self, cron: Cron):
        return cron_next_run_date(cron)

    @admin.display(description="timezone", ordering="timezone")
    def timezone_display(self, cron: Cron) -> str:
        return cron.timezone or "UTC"

    @admin.display(description="last run status", ordering="last_run")
    def last_run_status(self, cron: Cron) -> str:
        status = getattr(cron, "last_run", None)
        if status is None:
            status = (
                Run.objects.filter(cron=cron)
                .order_by("-created_at", "-run_id")
                .values_list("status", flat=True)
                .first()
            )
        return status or "-"

    @admin.display(description="next five fire times")
    def next_fires(self, cron: Cron):
        # Not before start_time (an instant exactly at it fires).
        now = djtz.now()
        if cron.start_time is not None and cron.start_time > now:
            now = cron.start_time - timedelta(seconds=1)
        fires = [
            fire
            for fire in upcoming_fires(
                cron.schedule, cron.timezone, end_time=cron.end_time, now=now
            )
            if cron.start_time is None or fire[1] >= cron.start_time
        ]
        if not fires:
            return "none (the end time has passed)" if cron.end_time else "-"
        zone = cron.timezone or "UTC"
        note = (
            ""
            if cron.enabled
            else format_html(
                "<p>{}</p>", "The cron is disabled: these are the times it would fire."
            )
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            (
                (local.strftime("%a %Y-%m-%d %H:%M:%S %Z"), utc.strftime("%Y-%m-%d %H:%M:%S UTC"))
                for local, utc in fires
            ),
        )
        return format_html(
            '{}<table id="next-fires"><thead><tr><th>{}</th><th>UTC</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            note,
            zone,
            rows,
        )

    @admin.display(description="django-celery-beat mirror")
    def periodic_task_link(self, cron: Cron):
        if cron.periodic_task_id is None:
            return "-"
        return admin_link(cron.periodic_task, f"{cron.periodic_task.name} (read-only)")

    # --- writes: only through the services ----------------------------------

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            kwargs = {}
            if obj.thread_id is None:
                # A blank choice means the default (cron_update's "").
                kwargs["on_run_completed"] = data.get("on_run_completed") or ""
                kwargs["overlap_policy"] = data.get("overlap_policy") or None
            # Only what changed: a new max_runs starts a new count.
            for name in (
                "max_runs",
                "start_time",
                "catchup_window",
                "jitter",
                "retry_policy",
                "max_consecutive_failures",
            ):
                if name in form.changed_data:
                    kwargs[name] = data.get(name)
            if "catchup" in form.changed_data:
                kwargs["catchup"] = data.get("catchup") or Cron.Catchup.LATEST  # blank: the default
            cron = cron_update(
                cron=obj,
                schedule=data["schedule"],
                timezone=data["timezone"],  # "" = UTC
                end_time=data["end_time"],
                enabled=data["enabled"],
                payload=data["payload"],
                metadata=data["metadata"],
                **kwargs,
            )
        else:
            thread = data.get("thread")
            cron = cron_create(
                assistant=data["assistant"],
                thread=thread,
                schedule=data["schedule"],
                timezone=data["timezone"] or None,
                payload=data["payload"],
                metadata=data["metadata"],
                end_time=data["end_time"],
                enabled=data["enabled"],
                # cron_create decides the default (and None on a thread cron).
                on_run_completed=data.get("on_run_completed"),
                overlap_policy=(data.get("overlap_policy") or None) if thread is None else None,
                start_time=data.get("start_time"),
                max_runs=data.get("max_runs"),
                catchup_window=data.get("catchup_window"),
                catchup=data.get("catchup") or None,
                jitter=data.get("jitter"),
                retry_policy=data.get("retry_policy"),
                max_consecutive_failures=data.get("max_consecutive_failures"),
            )
        # The admin goes on with the form's instance (redirect, history):
        # make it the row the service wrote.
        obj.cron_id = cron.cron_id
        obj._state.adding = False
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # no many-to-many fields or inlines: nothing to save besides the cron

    def delete_model(self, request, obj):
        cron_delete(cron=obj)

    def delete_queryset(self, request, queryset):
        for cron in queryset:
            cron_delete(cron=cron)

    # --- actions ------------------------------------------------------------

    @admin.action(description="Enable selected crons", permissions=["change"])
    def enable_crons(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected crons", permissions=["change"])
    def disable_crons(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = refused = 0
        for cron in queryset:
            if cron.enabled != enabled:
                try:
                    cron_update(cron=cron, enabled=enabled)
                except Invalid as exc:  # no run left of its max_runs
                    self.message_user(
                        request,
                        format_html("Cron {}: {}", admin_link(cron), exc.detail),
                        messages.WARNING,
                    )
                    refused += 1
                    continue
                changed += 1
        word = "enabled" if enabled else "disabled"
        self.message_user(
            request,
            f"{changed} cron(s) {word}; {queryset.count() - changed - refused} already {word}.",
            messages.SUCCESS,
        )

    @admin.action(description="Trigger selected crons now (a manual tick)", permissions=["change"])
    def trigger(self, request, queryset):
        """Fire each cron once, now, as the API's trigger does (crons.services.
        cron_trigger): a `manual` tick keyed apart from the schedule's instants,
        its run due at once; a disabled cron too. The schedule is left alone."""
        for cron in queryset:
            tick = cron_trigger(cron=cron)
            run = tick_run(tick)
            if tick.status == Tick.Status.FIRED and run is not None:
                self.message_user(
                    request,
                    format_html(
                        "Cron {} ({}): triggered, run {} created ({}).",
                        admin_link(cron),
                        cron.schedule,
                        admin_link(run),
                        run.status,
                    ),
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    format_html(
                        "Cron {} ({}): not fired, no run created ({}: {}).",
                        admin_link(cron),
                        cron.schedule,
                        tick.status,
                        tick.reason,
                    ),
                    messages.WARNING,
                )

    @admin.action(description="Backfill selected crons over a past range…", permissions=["change"])
    def backfill(self, request, queryset):
        """An intermediate page asks for [start, end); on "Backfill", each cron's
        instants in it that have not fired are fired once, as the API's backfill
        does (crons.services.cron_backfill). The range is checked for every
        selected cron first (crons.services.backfill_instants): when it is
        invalid for one, the page says why and nothing is fired."""
        crons = list(queryset)
        form = BackfillForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            start, end = form.cleaned_data["start"], form.cleaned_data["end"]
            now = db_now()
            for cron in crons:
                try:
                    backfill_instants(cron, start, end, now)
                except Invalid as exc:
                    form.add_error(None, f"Cron {cron.cron_id} ({cron.schedule}): {exc.detail}")
            if form.is_valid():
                for cron in crons:
                    report = cron_backfill(cron=cron, start=start, end=end, now=now)
                    self.message_user(
                        request,
                        format_html(
                            "Cron {} ({}): backfilled {} instant(s): {} fired, {} already "
                            "fired, {} rejected.",
                            admin_link(cron),
                            cron.schedule,
                            report.instants,
                            report.fired,
                            report.already_fired,
                            report.rejected,
                        ),
                        messages.SUCCESS if not report.rejected else messages.WARNING,
                    )
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Backfill crons",
            "subtitle": None,
            "opts": self.model._meta,
            "crons": crons,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/crons/cron/backfill.html", context)


# --- django-celery-beat's PeriodicTask: mirrors are read-only ----------------


def mirrored_cron(task: PeriodicTask) -> Cron | None:
    try:
        return task.cron
    except Cron.DoesNotExist:
        return None


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class MirroredPeriodicTaskAdmin(PeriodicTaskAdmin):
    """django-celery-beat's admin, except that a task mirroring a cronsvc cron
    cannot be changed, deleted, enabled, disabled or run here: its page links
    to the cron's page, the one place that edits it."""

    list_display = (*PeriodicTaskAdmin.list_display, "cron_page")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("cron")

    @admin.display(description="cronsvc cron")
    def cron_page(self, task: PeriodicTask):
        cron = mirrored_cron(task)
        if cron is None:
            return "-"
        return format_html(
            '<a href="{}" class="cron-page-link">Edit on the cron page: {} ({})</a>',
            reverse("admin:crons_cron_change", args=[cron.pk]),
            cron.schedule,
            cron.timezone or "UTC",
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and mirrored_cron(obj) is not None:
            # Read-only pages show model fields: drop the form-only task picker.
            fieldsets = [
                (name, {**opts, "fields": [f for f in opts["fields"] if f != "regtask"]})
                for name, opts in fieldsets
            ]
            notice = (
                "cronsvc",
                {
                    "fields": ("cron_page",),
                    "description": (
                        "This task mirrors a cronsvc cron for display; cronsvc's scheduler "
                        "fires the cron, not this task. It is read-only here."
                    ),
                },
            )
            return (notice, *fieldsets)
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "cron_page")

    def has_change_permission(self, request, obj=None):
        if obj is not None and mirrored_cron(obj) is not None:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and mirrored_cron(obj) is not None:
            return False
        return super().has_delete_permission(request, obj)

    def _without_mirrors(self, request, queryset):
        mirrors = queryset.filter(cron__isnull=False).count()
        if mirrors:
            self.message_user(
                request,
                f"{mirrors} task(s) left alone: they mirror cronsvc crons; change those on "
                "their cron pages.",
                messages.WARNING,
            )
        return queryset.filter(cron__isnull=True)

    @admin.action(description=PeriodicTaskAdmin.enable_tasks.short_description)
    def enable_tasks(self, request, queryset):
        queryset = self._without_mirrors(request, queryset)
        if queryset.exists():
            return super().enable_tasks(request, queryset)
        return None

    @admin.action(description=PeriodicTaskAdmin.disable_tasks.short_description)
    def disable_tasks(self, request, queryset):
        queryset = self._without_mirrors(request, queryset)
        if queryset.exists():
            return super().disable_tasks(request, queryset)
        return None

    @admin.action(description=PeriodicTaskAdmin.toggle_tasks.short_description)
    def toggle_tasks(self, request, queryset):
        queryset = self._without_mirrors(request, queryset)
        if queryset.exists():
            return super().toggle_tasks(request, queryset)
        return None

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description)
    def run_tasks(self, request, queryset):
        queryset = self._without_mirrors(request, queryset)
        if queryset.exists():
            return super().run_tasks(request, queryset)
        return None
