"""The real scheduler's tick (crons.ticking.fire_due) driven by a settable clock.

It fires at croniter's instants in the cron's timezone — for a full year for
daily and monthly expressions, and minute-level ones around DST changes and
month ends — except on DST days, where it follows the committed table.
"""

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from crons import lease, ticking
from crons.models import Cron, SchedulerLease, Tick
from crons.services import cron_update
from runs.models import Run
from tests.factories import make_cron, z
from threads.services import thread_create

pytestmark = pytest.mark.django_db

UTC = dt.UTC
TABLE = json.loads((Path(__file__).parents[1] / "data" / "dst_table.json").read_text())
DST_DAYS = {(d["tz"], d["date"]) for d in TABLE["days"]}


def tick(now):
    """One scheduler tick at `now`, then the advance beat does off the dispatch path."""
    report = ticking.fire_due(now=now)
    ticking.advance()
    return report


def drive(cron: Cron, until: dt.datetime) -> list[dt.datetime]:
    """Advance the clock to each next_run_date, ticking there; return fired instants."""
    while True:
        cron.refresh_from_db()
        if cron.next_run_date is None or cron.next_run_date > until:
            break
        tick(cron.next_run_date)
    ticks = Tick.objects.filter(cron=cron).order_by("scheduled_at")
    assert {t.status for t in ticks} <= {Tick.Status.FIRED}
    return [t.scheduled_at for t in ticks]


def croniter_instants(schedule, tz, start, end) -> list[dt.datetime]:
    zone = ZoneInfo(tz) if tz else UTC
    it = croniter(schedule, start.astimezone(zone))
    out = []
    while (t := it.get_next(dt.datetime)) <= end:
        out.append(t.astimezone(UTC))
    return out


def off_dst_days(instants, tz):
    if not tz:
        return instants
    zone = ZoneInfo(tz)
    return [t for t in instants if (tz, t.astimezone(zone).date().isoformat()) not in DST_DAYS]


YEAR_START = z("2026-01-01T00:00:00Z") - dt.timedelta(seconds=1)
YEAR_END = z("2027-01-01T00:00:00Z")


@pytest.mark.parametrize("tz", [None, "America/New_York"])
@pytest.mark.parametrize(
    "schedule", ["0 9 1 * 1", "0 0 L * *", "0 12 * * 5#2", "30 2 * * *", "30 1 * * *"]
)
def test_a_year_of_fires_matches_croniter(schedule, tz):
    cron = make_cron(schedule, tz, start=YEAR_START)
    fired = drive(cron, YEAR_END)
    expected = croniter_instants(schedule, tz, YEAR_START, YEAR_END)
    assert off_dst_days(fired, tz) == off_dst_days(expected, tz)
    assert Run.objects.filter(cron=cron).count() == len(fired)
    assert sorted(Run.objects.filter(cron=cron).values_list("scheduled_at", flat=True)) == fired


def test_known_instants_of_or_and_nth_weekday():
    # 0 9 1 * 1: the 1st of the month OR any Monday (Celery's crontab would AND them).
    cron = make_cron("0 9 1 * 1", "America/New_York", start=YEAR_START)
    fired = drive(cron, z("2026-02-10T00:00:00Z"))
    assert fired[:4] == [
        z("2026-01-01T14:00:00Z"),
        z("2026-01-05T14:00:00Z"),
        z("2026-01-12T14:00:00Z"),
        z("2026-01-19T14:00:00Z"),
    ]
    assert z("2026-02-01T14:00:00Z") in fired  # a Sunday, the 1st
    second_friday = make_cron("0 12 * * 5#2", None, start=YEAR_START)
    assert drive(second_friday, z("2026-04-01T00:00:00Z")) == [
        z("2026-01-09T12:00:00Z"),
        z("2026-02-13T12:00:00Z"),
        z("2026-03-13T12:00:00Z"),
    ]


@pytest.mark.parametrize("day", TABLE["days"], ids=lambda d: f"{d['tz']}-{d['date']}")
def test_dst_days_follow_the_committed_table(day):
    for schedule, expected in day["expected"].items():
        cron = make_cron(schedule, day["tz"], start=z(day["start"]))
        assert [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in drive(cron, z(day["end"]))] == expected, (
            schedule
        )
        Cron.objects.filter(pk=cron.pk).delete()


@pytest.mark.parametrize(
    ("schedule", "tz", "start", "end"),
    [
        ("*/7 * * * *", "America/New_York", "2026-03-08T03:00:00Z", "2026-03-08T12:00:00Z"),
        ("*/7 * * * *", "America/New_York", "2026-11-01T03:00:00Z", "2026-11-01T09:00:00Z"),
        ("*/7 * * * *", "UTC", "2026-01-31T22:00:00Z", "2026-02-01T02:00:00Z"),
        ("*/20 1 * * *", "America/New_York", "2026-10-30T00:00:00Z", "2026-11-04T00:00:00Z"),
        ("*/20 1 * * *", "America/New_York", "2026-03-06T00:00:00Z", "2026-03-10T00:00:00Z"),
    ],
)
def test_minute_level_windows(schedule, tz, start, end):
    start, end = z(start) - dt.timedelta(seconds=1), z(end)
    cron = make_cron(schedule, tz, start=start)
    fired = drive(cron, end)
    expected = croniter_instants(schedule, tz, start, end)
    assert off_dst_days(fired, tz) == off_dst_days(expected, tz)
    for day in TABLE["days"]:
        if day["tz"] == tz and schedule in day["expected"] and start < z(day["start"]) < end:
            on_day = [
                t.strftime("%Y-%m-%dT%H:%M:%SZ")
                for t in fired
                if z(day["start"]) < t <= z(day["end"])
            ]
            assert on_day == day["expected"][schedule]
    # Real time through the repeated hour: 6 fires of */20 1 on fall-back day.
    if schedule == "*/20 1 * * *" and start.month == 10:
        nov1 = [t for t in fired if t.astimezone(ZoneInfo(tz)).date() == dt.date(2026, 11, 1)]
        assert len(nov1) == 6


def test_disabled_and_ended_crons_do_not_fire():
    start = z("2026-05-01T00:00:00Z")
    disabled = make_cron("* * * * *", start=start, enabled=False)
    ended = make_cron(
        "* * * * *", start=start, end_time=start + dt.timedelta(minutes=2, seconds=30)
    )
    live = make_cron("* * * * *", start=start)
    for minute in range(1, 6):
        tick(start + dt.timedelta(minutes=minute))
    assert Tick.objects.filter(cron=disabled).count() == 0
    assert Tick.objects.filter(cron=ended).count() == 2
    assert Cron.objects.get(pk=ended.pk).next_run_date is None
    assert Tick.objects.filter(cron=live).count() == 5


def test_schedule_edit_takes_effect_at_next_tick():
    start = z("2026-05-01T00:00:00Z")
    cron = make_cron("0 * * * *", start=start)
    cron_update(cron=cron, schedule="*/10 * * * *", now=start + dt.timedelta(minutes=1))
    tick(start + dt.timedelta(minutes=10))
    assert list(Tick.objects.values_list("scheduled_at", flat=True)) == [
        start + dt.timedelta(minutes=10)
    ]


def test_missed_ticks_fire_latest_within_grace_and_record_skips(settings):
    settings.CRONSVC_MISSED_TICK_GRACE = 120
    start = z("2026-05-01T00:00:00Z")
    cron = make_cron("* * * * *", start=start)
    # Beat was down from 00:00 to 00:05:30: ticks 00:01..00:05 are due.
    tick(start + dt.timedelta(minutes=5, seconds=30))
    ticks = list(Tick.objects.filter(cron=cron).order_by("scheduled_at"))
    assert [(t.scheduled_at.minute, t.status) for t in ticks] == [
        (1, "skipped"),
        (2, "skipped"),
        (3, "skipped"),
        (4, "skipped"),
        (5, "fired"),
    ]
    assert ticks[0].reason == "missed: a later tick was due"
    # Back on time: the following tick fires normally.
    tick(start + dt.timedelta(minutes=6))
    assert (
        Tick.objects.get(cron=cron, scheduled_at=start + dt.timedelta(minutes=6)).status == "fired"
    )
    cron.refresh_from_db()
    assert cron.next_run_date == start + dt.timedelta(minutes=7)


def test_tick_older_than_grace_is_skipped_with_reason(settings):
    settings.CRONSVC_MISSED_TICK_GRACE = 60
    start = z("2026-05-01T00:00:00Z")
    cron = make_cron("0 * * * *", start=start)
    tick(z("2026-05-01T01:05:00Z"))
    recorded = Tick.objects.get(cron=cron)
    assert (recorded.scheduled_at, recorded.status) == (z("2026-05-01T01:00:00Z"), "skipped")
    assert recorded.reason == "missed by 300 s (grace 60 s)"
    assert Run.objects.count() == 0
    assert Cron.objects.get(pk=cron.pk).next_run_date == z("2026-05-01T02:00:00Z")


def test_overlap_reject_and_pending_cap(settings):
    settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD = 2
    start = z("2026-05-01T00:00:00Z")
    thread = thread_create()
    reject = make_cron(
        "* * * * *", start=start, thread=thread, payload={"multitask_strategy": "reject"}
    )
    for minute in (1, 2):
        tick(start + dt.timedelta(minutes=minute))
    ticks = list(Tick.objects.filter(cron=reject).order_by("scheduled_at"))
    assert [t.status for t in ticks] == ["fired", "rejected"]
    assert "busy" in ticks[1].reason

    other = thread_create()
    enqueue = make_cron("* * * * *", start=start + dt.timedelta(minutes=2), thread=other)
    for minute in (3, 4, 5):
        tick(start + dt.timedelta(minutes=minute))
    statuses = list(
        Tick.objects.filter(cron=enqueue).order_by("scheduled_at").values_list("status", "reason")
    )
    assert [s for s, _ in statuses] == ["fired", "fired", "rejected"]
    assert "2 pending runs (limit 2)" in statuses[2][1]


def test_stateless_cron_gets_a_new_thread_each_tick():
    start = z("2026-05-01T00:00:00Z")
    cron = make_cron("* * * * *", start=start, on_run_completed="keep")
    for minute in (1, 2):
        tick(start + dt.timedelta(minutes=minute))
    runs = list(Run.objects.filter(cron=cron))
    assert len({r.thread_id for r in runs}) == 2
    assert {r.on_completion for r in runs} == {"keep"}
    assert {r.metadata["cron_id"] for r in runs} == {str(cron.cron_id)}


def test_a_beat_without_the_lease_fires_nothing():
    start = z("2026-05-01T00:00:00Z")
    make_cron("* * * * *", start=start)
    now = start + dt.timedelta(minutes=1)
    epoch_a = lease.lease_acquire(holder="a", now=now)
    assert lease.lease_acquire(holder="b", now=now) is None
    with pytest.raises(lease.LeaseLost):
        ticking.fire_due(now=now, holder="b", epoch=epoch_a)
    assert Tick.objects.count() == 0
    # a's lease expires; b takes over with a new epoch; a's stale epoch is fenced off.
    later = now + dt.timedelta(seconds=30)
    epoch_b = lease.lease_acquire(holder="b", now=later)
    assert epoch_b == epoch_a + 1
    with pytest.raises(lease.LeaseLost):
        ticking.fire_due(now=later, holder="a", epoch=epoch_a)
    report = ticking.fire_due(now=later, holder="b", epoch=epoch_b)
    ticking.advance()
    assert report.fired == 1
    assert SchedulerLease.objects.get().holder == "b"


def test_lookahead_prepares_runs_no_worker_claims_before_their_instant(monkeypatch):
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    start = dt.datetime.now(UTC).replace(microsecond=0)
    cron = make_cron("* * * * * */30", start=start)  # every 30 s
    instant = cron.next_run_date
    report = ticking.fire_due(now=start, lookahead=40)
    assert report.fired == 1 and report.prepared == {instant: 1}
    run = Run.objects.get(cron=cron)
    assert (run.status, run.scheduled_at) == ("pending", instant)
    assert Tick.objects.get(cron=cron).scheduled_at == instant
    # The run exists, but nothing claims it before its instant.
    from runs.lifecycle import run_claim_next, run_claim_ready

    assert run_claim_ready() is None
    assert run_claim_next(thread_id=run.thread_id) is None
    ticking.advance()
    cron.refresh_from_db()
    assert cron.next_run_date == instant + dt.timedelta(seconds=30)


def test_rescheduling_or_deleting_withdraws_prepared_runs():
    from crons.services import cron_delete

    start = dt.datetime.now(UTC).replace(microsecond=0)
    cron = make_cron("* * * * * */30", start=start)
    ticking.fire_due(now=start, lookahead=40)
    ticking.advance()
    assert Run.objects.filter(cron=cron).count() == 1
    cron_update(cron=Cron.objects.get(pk=cron.pk), schedule="0 0 1 1 *")
    assert Run.objects.filter(cron=cron).count() == 0
    assert Tick.objects.filter(cron=cron).count() == 0
    assert Cron.objects.get(pk=cron.pk).next_run_date.month == 1

    other = make_cron("* * * * * */30", start=start)
    ticking.fire_due(now=start, lookahead=40)
    thread_id = Run.objects.get(cron=other).thread_id
    cron_delete(cron=other)
    assert not Run.objects.filter(thread_id=thread_id).exists()
    from threads.models import Thread

    assert not Thread.objects.filter(pk=thread_id).exists()
