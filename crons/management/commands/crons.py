"""`python manage.py crons list|describe|trigger|backfill|pause|resume`: the
scheduler controls of the API, from a shell, through the same services
(crons.services) and reads (crons.selectors). As the operator: custom auth
does not apply, and a trigger or backfill fires as the cron's owner.

    python manage.py crons list [--limit 100] [--enabled | --disabled]
    python manage.py crons describe <cron_id> [--ticks 10]
    python manage.py crons trigger <cron_id>
    python manage.py crons backfill <cron_id> --start 2026-11-30T08:00:00Z --end 2026-11-30T09:00:00Z
    python manage.py crons pause <cron_id>
    python manage.py crons resume <cron_id>
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from crons import selectors, services
from crons.models import Cron, Tick
from crons.retry import retry_policy_of
from cronsvc.dbclock import db_now
from cronsvc.errors import ServiceError


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


def _instant(text: str, name: str) -> datetime:
    """An ISO 8601 instant (naive: UTC)."""
    value = parse_datetime(text)
    if value is None:
        raise CommandError(f"--{name} {text!r} is not an ISO 8601 date and time")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _retries(cron: Cron) -> str:
    """A cron's retry_policy in words ("-": no retry)."""
    policy = retry_policy_of(cron.retry_policy)
    if policy["max_attempts"] <= 1:
        return "-"
    return (
        f"up to {policy['max_attempts']} attempts, {policy['initial_interval']:g} s "
        f"x {policy['backoff_coefficient']:g} apart (at most {policy['max_interval']:g} s)"
    )


class Command(BaseCommand):
    help = "List, describe, trigger, backfill, pause or resume crons."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="crons, newest first")
        listing.add_argument("--limit", type=int, default=100)
        state = listing.add_mutually_exclusive_group()
        state.add_argument("--enabled", action="store_true", help="only enabled crons")
        state.add_argument("--disabled", action="store_true", help="only disabled crons")
        describe = sub.add_parser("describe", help="a cron, its next instants and its ticks")
        describe.add_argument("cron_id")
        describe.add_argument("--ticks", type=int, default=10, help="how many recent ticks")
        trigger = sub.add_parser("trigger", help="fire a cron once, now (a manual tick)")
        trigger.add_argument("cron_id")
        backfill = sub.add_parser("backfill", help="fire the instants of [start, end) not fired")
        backfill.add_argument("cron_id")
        backfill.add_argument("--start", required=True, help="ISO 8601 (naive: UTC)")
        backfill.add_argument("--end", required=True, help="ISO 8601 (naive: UTC), at most now")
        for name, what in (("pause", "disable"), ("resume", "enable")):
            sub.add_parser(name, help=f"{what} a cron").add_argument("cron_id")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc

    def _cron(self, cron_id: str) -> Cron:
        return selectors.cron_get_or_404(cron_id, action=None)

    def _list(self, *, limit: int, enabled: bool, disabled: bool, **_) -> None:
        state = True if enabled else False if disabled else None
        qs = selectors.cron_search(enabled=state).select_related("assistant")
        total = qs.count()
        self.stdout.write(
            f"{'CRON ID':36}  {'ENABLED':7}  {'SCHEDULE':20}  {'TIMEZONE':16}  "
            f"{'NEXT RUN (UTC)':25}  {'ASSISTANT':16}  THREAD"
        )
        for cron in qs[:limit]:
            self.stdout.write(
                f"{cron.cron_id!s:36}  {'yes' if cron.enabled else 'no':7}  "
                f"{cron.schedule:20}  {cron.timezone or 'UTC':16}  "
                f"{_when(selectors.cron_next_run_date(cron)):25}  "
                f"{cron.assistant.graph_id:16}  {cron.thread_id or 'stateless'}"
            )
        shown = min(limit, total)
        self.stdout.write(
            f"{shown} of {total} crons" + (" (--limit for more)" if shown < total else "")
        )

    def _describe(self, *, cron_id: str, ticks: int, **_) -> None:
        cron = self._cron(cron_id)
        now = db_now()
        lines = [
            ("cron", str(cron.cron_id)),
            ("schedule", cron.schedule),
            ("timezone", cron.timezone or "UTC"),
            ("enabled", "yes" if cron.enabled else "no (paused)"),
            ("assistant", f"{cron.assistant.graph_id} ({cron.assistant_id})"),
            (
                "thread",
                str(cron.thread_id) if cron.thread_id else "stateless (a new thread each run)",
            ),
            ("owner", cron.user_id or "-"),
            ("end time", _when(cron.end_time)),
            ("start time", _when(cron.start_time)),
            (
                "overlap",
                cron.overlap_policy if cron.thread_id is None else "multitask_strategy (thread)",
            ),
            (
                "max runs",
                "-"
                if cron.max_runs is None
                else f"{cron.max_runs} ({cron.remaining_runs} remaining)",
            ),
            ("paused", cron.paused_reason or "-"),
            (
                "catch-up",
                f"{cron.catchup} within "
                + (
                    f"{cron.catchup_window} s"
                    if cron.catchup_window is not None
                    else f"the grace ({settings.CRONSVC_MISSED_TICK_GRACE} s)"
                ),
            ),
            ("jitter", f"{cron.jitter} s" if cron.jitter else "-"),
            ("retries", _retries(cron)),
            (
                "failures",
                f"{cron.consecutive_failures} in a row"
                + (
                    f" (pauses at {cron.max_consecutive_failures})"
                    if cron.max_consecutive_failures
                    else ""
                ),
            ),
            (
                "last run",
                f"{cron.last_run_final_status} at {_when(cron.last_run_date)}"
                if cron.last_run_date
                else "-",
            ),
            ("next run", _when(selectors.cron_next_run_date(cron))),
            ("created", _when(cron.created_at)),
        ]
        for name, value in lines:
            self.stdout.write(f"{name + ':':11} {value}")
        upcoming = selectors.cron_next_fires(cron, after=now, limit=5)
        self.stdout.write("next instants (UTC):" + ("" if upcoming else " none"))
        for instant in upcoming:
            self.stdout.write(f"  {instant.isoformat()}")
        qs = selectors.cron_ticks(cron)
        recent = list(qs[:ticks])
        runs = selectors.tick_runs(recent)
        self.stdout.write(f"ticks: {qs.count()} recorded" + (", newest first:" if recent else ""))
        for tick in recent:
            status, attempts = runs.get(tick.run_id, (None, None))
            if tick.run_id is None:
                run = "no run"
            elif status is None:
                run = f"run {tick.run_id} (deleted)"
            else:
                run = f"run {tick.run_id} ({status}, {attempts} attempts)"
            reason = f" - {tick.reason}" if tick.reason else ""
            self.stdout.write(
                f"  {tick.scheduled_at.isoformat()}  {tick.kind:9}  {tick.status:8}  {run}{reason}"
            )

    def _trigger(self, *, cron_id: str, **_) -> None:
        cron = self._cron(cron_id)
        tick = services.cron_trigger(cron=cron)
        run = selectors.tick_run(tick)
        if tick.status != Tick.Status.FIRED or run is None:
            raise CommandError(f"Cron {cron.cron_id} was not fired: {tick.reason}")
        self.stdout.write(
            f"Triggered cron {cron.cron_id}: run {run.run_id} ({run.status}) "
            f"on thread {run.thread_id}"
        )

    def _backfill(self, *, cron_id: str, start: str, end: str, **_) -> None:
        cron = self._cron(cron_id)
        report = services.cron_backfill(
            cron=cron, start=_instant(start, "start"), end=_instant(end, "end")
        )
        self.stdout.write(
            f"Backfilled cron {cron.cron_id}: {report.instants} instants, "
            f"{report.fired} fired, {report.already_fired} already fired, "
            f"{report.rejected} rejected"
        )

    def _pause(self, *, cron_id: str, **_) -> None:
        cron = services.cron_set_enabled(cron=self._cron(cron_id), enabled=False)
        self.stdout.write(f"Paused cron {cron.cron_id} ({cron.schedule}): it fires no more ticks")

    def _resume(self, *, cron_id: str, **_) -> None:
        cron = services.cron_set_enabled(cron=self._cron(cron_id), enabled=True)
        self.stdout.write(
            f"Resumed cron {cron.cron_id} ({cron.schedule}): next run "
            f"{_when(selectors.cron_next_run_date(cron))}"
        )
