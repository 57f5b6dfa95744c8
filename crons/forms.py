"""The cron form of the admin, and what the cron page shows about a schedule.

The form only validates: schedule and timezone through `crons.services.
validate_schedule` (the API's check), run options in the payload through the
API's `RunOptionsIn`. Saving is `CronAdmin.save_model`, which calls
`cron_create` / `cron_update`, so the mirrored PeriodicTask stays in step.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from django import forms
from django.utils import timezone as djtz

from crons import firetime
from crons.models import Cron
from crons.retry import InvalidPolicy, retry_policy_normalized
from crons.services import THREAD_OVERLAP, validate_schedule
from cronsvc.errors import Invalid
from cronsvc.http.inputs import RunOptionsIn
from cronsvc.selectors import assistant_search
from cronsvc.services import assistants_ensure_defaults

UPCOMING = 5


def schedule_description(schedule: str) -> str:
    """English for a cron expression ("At 09:00, Monday through Friday"), or "".

    croniter's six-field form puts seconds last and cron-descriptor's puts them
    first, and croniter writes "last Friday" as `L5` where cron-descriptor
    wants `5L`: both are translated before describing."""
    fields = firetime.expand_alias(schedule).split()
    if len(fields) == 6:
        fields = [fields[5], *fields[:5]]
    if len(fields) in (5, 6):
        fields[-1] = re.sub(r"^L(\d)$", r"\1L", fields[-1])
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(" ".join(fields), options).get_description()
    except Exception:  # noqa: BLE001 - cron-descriptor raises several types
        return ""


def upcoming_fires(
    schedule: str,
    timezone: str | None,
    *,
    end_time: datetime | None = None,
    now: datetime | None = None,
    count: int = UPCOMING,
) -> list[tuple[datetime, datetime]]:
    """The next `count` fire instants after `now` (up to end_time) as
    (wall time in the cron's timezone, UTC) pairs; [] for an invalid schedule."""
    try:
        instants = firetime.next_fires(schedule, timezone, now or djtz.now(), count)
    except (firetime.InvalidSchedule, firetime.InvalidTimezone):
        return []
    zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    return [(t.astimezone(zone), t) for t in instants if end_time is None or t <= end_time]


class PrettyJSONField(forms.JSONField):
    """A JSON object, shown indented."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)

    def to_python(self, value):
        value = super().to_python(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Enter a JSON object ({...}).", code="not_object")
        return value


class RetryPolicyFormField(forms.JSONField):
    """A cron's retry_policy: empty is none (no retry); otherwise an object the
    API would take (crons.retry), shown indented with its defaults."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value in (None, ""):
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)

    def to_python(self, value):
        value = super().to_python(value)
        if value in (None, "", {}):
            return None
        try:
            return retry_policy_normalized(value)
        except InvalidPolicy as exc:
            raise forms.ValidationError(str(exc), code="invalid_policy") from exc


class TimezoneInput(forms.TextInput):
    """A text box with the IANA zone names as suggestions (HTML datalist): a
    picker that still sends what was typed, so the service judges it."""

    template_name = "admin/crons/widgets/timezone.html"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["attrs"]["list"] = f"{context['widget']['attrs']['id']}_zones"
        context["widget"]["attrs"].setdefault("placeholder", "UTC")
        context["zones"] = sorted(available_timezones())
        return context


def _json_area() -> forms.Textarea:
    return forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField json"})


class CronForm(forms.ModelForm):
    timezone = forms.CharField(
        required=False,
        widget=TimezoneInput(attrs={"size": 32}),
        help_text="IANA timezone the schedule is read in (e.g. Europe/Paris). Empty: UTC.",
    )
    payload = PrettyJSONField(
        required=False,
        widget=_json_area(),
        help_text=(
            "What each tick runs with, as the API's run options: input, config, context, "
            "metadata (the run's), multitask_strategy, interrupt_before/after, durability..."
        ),
    )
    metadata = PrettyJSONField(
        required=False, widget=_json_area(), help_text="The cron's own metadata (search filters)."
    )

    max_runs = forms.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "Scheduled ticks that may fire, then the cron disables itself. Empty: no limit. "
            "Changing it starts a new count (remaining runs)."
        ),
    )

    catchup_window = forms.IntegerField(
        required=False,
        min_value=0,
        help_text=(
            "Seconds a missed instant (beat or database down) may still fire; older ones are "
            "recorded skipped. Empty: the server's CRONSVC_MISSED_TICK_GRACE."
        ),
    )
    jitter = forms.IntegerField(
        required=False,
        min_value=0,
        help_text=(
            "Each instant's run starts up to this many seconds late (a stable offset per "
            "instant, always before the next one). Empty or 0: on time."
        ),
    )
    retry_policy = RetryPolicyFormField(
        required=False,
        widget=_json_area(),
        help_text=(
            "A run that ends in error or timeout is attempted again from its last checkpoint: "
            '{"max_attempts": 3, "initial_interval": 1, "backoff_coefficient": 2.0, '
            '"max_interval": 100} (keys left out take these defaults). Empty: no retry.'
        ),
    )
    max_consecutive_failures = forms.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "After this many runs failed in a row (after retries) the cron disables itself. "
            "Empty: never. Re-enabling resets the count."
        ),
    )

    class Meta:
        model = Cron
        fields = [
            "assistant",
            "thread",
            "schedule",
            "timezone",
            "enabled",
            "end_time",
            "on_run_completed",
            "overlap_policy",
            "start_time",
            "max_runs",
            "catchup_window",
            "catchup",
            "jitter",
            "retry_policy",
            "max_consecutive_failures",
            "payload",
            "metadata",
        ]
        help_texts = {
            "schedule": (
                "Cron expression: minute hour day-of-month month day-of-week, an optional "
                "sixth field of seconds (last), or @hourly/@daily/@weekly/@monthly/@yearly."
            ),
            "end_time": "No tick after this instant (UTC). Empty: no end.",
            "on_run_completed": "Stateless crons: delete (default) or keep each run's thread.",
            "overlap_policy": (
                "Stateless crons: what a tick does while an earlier run of the cron is pending "
                "or running — skip it, buffer one (or all) until that run ends, cancel the "
                "other, or allow all (default). Thread crons use multitask_strategy."
            ),
            "start_time": "No tick before this instant (UTC). Empty: from now.",
            "catchup": (
                "Which missed instants within the catch-up window fire: the latest only "
                "(default) or all, in order (subject to the overlap policy)."
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "assistant" in self.fields:
            assistants_ensure_defaults()  # a deleted default assistant is offered again
            self.fields["assistant"].queryset = assistant_search(
                sort_by="graph_id", sort_order="asc"
            )
        if "overlap_policy" in self.fields:
            self.fields["overlap_policy"].required = False  # empty: the default (allow_all)
        if "catchup" in self.fields:
            self.fields["catchup"].required = False  # empty: the default (latest)
        if "on_run_completed" in self.fields:
            self.fields["on_run_completed"].help_text = self._meta.help_texts["on_run_completed"]

    def clean_schedule(self) -> str:
        return self.cleaned_data["schedule"].strip()

    def clean_timezone(self) -> str:
        return (self.cleaned_data.get("timezone") or "").strip()

    def clean_payload(self) -> dict:
        payload = self.cleaned_data.get("payload") or {}
        options = RunOptionsIn(data=payload)
        if not options.is_valid():
            raise forms.ValidationError(
                [f"{key}: {' '.join(str(m) for m in msgs)}" for key, msgs in options.errors.items()]
            )
        self._refuse_removed_keys("payload", payload)
        return payload

    def clean_metadata(self) -> dict:
        metadata = self.cleaned_data.get("metadata") or {}
        self._refuse_removed_keys("metadata", metadata)
        return metadata

    def _refuse_removed_keys(self, field: str, value: dict) -> None:
        # cron_update merges payload and metadata into the stored ones (as the
        # API's PATCH does), so a key deleted here would silently stay.
        if self.instance._state.adding:
            return
        removed = sorted(set(getattr(self.instance, field) or {}) - set(value))
        if removed:
            raise forms.ValidationError(
                f"Keys cannot be removed here ({', '.join(removed)}): edits are merged into "
                f"the stored {field}. Set them to null instead.",
                code="removed_keys",
            )

    def clean(self) -> dict:
        data = super().clean()
        thread = data.get("thread") if self.instance._state.adding else self.instance.thread
        policy = data.get("overlap_policy")
        if thread is not None and policy and policy != Cron.OverlapPolicy.ALLOW_ALL:
            self.add_error("overlap_policy", THREAD_OVERLAP)
        if (
            not self.instance._state.adding
            and data.get("enabled")
            and self.instance.remaining_runs == 0
            and "max_runs" not in self.changed_data
        ):
            self.add_error(
                "max_runs",
                "This cron has fired all its max_runs: set a new max_runs (or empty it for no "
                "limit) to enable it again.",
            )
        schedule = data.get("schedule")
        if schedule is not None and "timezone" in data:
            try:
                validate_schedule(schedule, data["timezone"] or None)
            except Invalid as exc:
                field = (
                    "timezone"
                    if isinstance(exc.__cause__, firetime.InvalidTimezone)
                    else "schedule"
                )
                self.add_error(field, exc.detail)
        return data


class BackfillForm(forms.Form):
    """The range of the admin's backfill action: [start, end), as the API's
    `POST /runs/crons/{id}/backfill` takes it (naive times are UTC, the
    admin's timezone). The range itself is checked by the service
    (`crons.services.backfill_instants`) for each selected cron."""

    start = forms.DateTimeField(
        help_text="ISO 8601, e.g. 2026-11-30T08:00:00Z; the first instant considered",
        widget=forms.DateTimeInput(attrs={"size": 28, "placeholder": "2026-11-30T08:00:00Z"}),
    )
    end = forms.DateTimeField(
        help_text="ISO 8601, at most now; excluded",
        widget=forms.DateTimeInput(attrs={"size": 28, "placeholder": "2026-11-30T09:00:00Z"}),
    )
