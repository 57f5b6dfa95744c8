"""Catch-up and jitter (scheduler control, issue 15) on the real scheduler's
tick (crons.ticking.fire_due) with a settable clock, to the second.

- catch-up: after a simulated outage (no tick for an hour), `catchup_window`
  says how late an instant may still fire and `catchup` which of those fire
  (`latest`: the newest; `all`: every one, in order, through the overlap
  policy, at most 100 per pass); the older ones are recorded skipped with
  the reason;
- jitter: each instant's run may start at instant + an offset derived from
  (cron, instant), stable, in [0, jitter) and before the next instant; the
  run keeps its instant as `scheduled_at`, waits in `not_before` (the claim,
  the reconciler, withdrawal and the fire-lag metric read it), and the
  tick's `fire_at` is instant + offset;
- the API: the three fields accepted by create and PATCH, returned on every
  cron, and refused with a 422 that writes nothing.

Runs are claimed through runs.lifecycle as a worker would (the claim reads
the database's clock); the session's worker never sees them (parked_runs)."""

import datetime as dt

import httpx
import pytest
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from crons import dispatch, firetime, ticking
from crons.models import Cron, Tick
from crons.services import cron_backfill, cron_delete, cron_trigger, cron_update
from cronsvc import metrics
from cronsvc.dbclock import db_now
from runs import leases, lifecycle
from runs.models import Run
from tests.factories import make_cron, z

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("parked_runs")]

START = z("2026-05-01T00:00:00Z")
CATCHUP_FIELDS = ("catchup_window", "catchup", "jitter")


def at(minute: int, second: int = 0) -> dt.datetime:
    return START + dt.timedelta(minutes=minute, seconds=second)


def tick(now, **kwargs):
    report = ticking.fire_due(now=now, **kwargs)
    ticking.advance()
    return report


def ticks(cron: Cron) -> list[Tick]:
    return list(Tick.objects.filter(cron=cron).order_by("scheduled_at"))


def statuses(cron: Cron) -> dict:
    return {t.scheduled_at: t.status for t in ticks(cron)}


def after_an_outage(**kwargs) -> Cron:
    """A `*/10 * * * *` cron that fired at 00:00, then no tick for an hour:
    instants 00:10 ... 01:00 are due at 01:00:30."""
    cron = make_cron("*/10 * * * *", start=at(0, -1), **kwargs)
    tick(at(0))
    assert statuses(cron) == {at(0): "fired"}
    return cron


# ----------------------------------------------------------------- catch-up


def test_catchup_all_fires_every_instant_within_the_window_in_order():
    cron = after_an_outage(catchup_window=1800, catchup="all")
    report = tick(at(60, 30))
    assert (report.fired, report.skipped) == (3, 3)
    recorded = ticks(cron)[1:]
    assert [(t.scheduled_at, t.status) for t in recorded] == [
        (at(10), "skipped"),
        (at(20), "skipped"),
        (at(30), "skipped"),
        (at(40), "fired"),
        (at(50), "fired"),
        (at(60), "fired"),
    ]
    # Older than the window: skipped, saying by how much.
    assert [t.reason for t in recorded[:3]] == [
        "missed by 3030 s (catchup_window 1800 s)",
        "missed by 2430 s (catchup_window 1800 s)",
        "missed by 1830 s (catchup_window 1800 s)",
    ]
    # In order: the oldest instant's tick and run first.
    fired = Tick.objects.filter(cron=cron, status="fired", scheduled_at__gt=at(0)).order_by("id")
    assert [t.scheduled_at for t in fired] == [at(40), at(50), at(60)]
    runs = Run.objects.filter(cron=cron, scheduled_at__gt=at(0)).order_by("created_at", "run_id")
    assert [r.scheduled_at for r in runs] == [at(40), at(50), at(60)]
    assert [t.run_id for t in fired] == [r.run_id for r in runs]
    # Caught up: the next instant is the schedule's next.
    assert Cron.objects.get(pk=cron.pk).next_run_date == at(70)
    tick(at(70))
    assert statuses(cron)[at(70)] == "fired"


def test_catchup_latest_fires_only_the_newest_instant_within_the_window():
    cron = after_an_outage(catchup_window=1800)
    assert cron.catchup == "latest"
    report = tick(at(60, 30))
    assert (report.fired, report.skipped) == (1, 5)
    recorded = ticks(cron)[1:]
    assert [(t.scheduled_at, t.status) for t in recorded] == [
        (at(10), "skipped"),
        (at(20), "skipped"),
        (at(30), "skipped"),
        (at(40), "skipped"),
        (at(50), "skipped"),
        (at(60), "fired"),
    ]
    assert {t.reason for t in recorded[:5]} == {"missed: a later tick was due"}
    assert list(
        Run.objects.filter(cron=cron, scheduled_at__gt=at(0)).values_list("scheduled_at", flat=True)
    ) == [at(60)]


@pytest.mark.parametrize("catchup", ["latest", "all"])
def test_beyond_the_window_nothing_fires(catchup):
    cron = after_an_outage(catchup_window=20, catchup=catchup)
    report = tick(at(60, 30))
    assert (report.fired, report.skipped) == (0, 6)
    assert set(statuses(cron).values()) == {"fired", "skipped"}
    assert Run.objects.filter(cron=cron).count() == 1  # 00:00's
    newest = Tick.objects.get(cron=cron, scheduled_at=at(60))
    assert newest.reason == "missed by 30 s (catchup_window 20 s)"
    assert Cron.objects.get(pk=cron.pk).next_run_date == at(70)


def test_a_window_of_zero_fires_on_time_only():
    cron = make_cron("*/10 * * * *", start=at(0, -1), catchup_window=0, catchup="all")
    tick(at(0))  # on time
    tick(at(10, 1))  # a second late
    assert statuses(cron) == {at(0): "fired", at(10): "skipped"}
    assert Tick.objects.get(cron=cron, scheduled_at=at(10)).reason == (
        "missed by 1 s (catchup_window 0 s)"
    )


def test_defaults_keep_the_global_grace_and_the_newest_instant(settings):
    settings.CRONSVC_MISSED_TICK_GRACE = 300
    cron = after_an_outage()
    assert (cron.catchup_window, cron.catchup, cron.jitter) == (None, "latest", None)
    tick(at(60, 30))
    assert [t.status for t in ticks(cron)] == ["fired"] + ["skipped"] * 5 + ["fired"]
    # Beyond the grace: today's reason, naming the grace.
    late = make_cron("*/10 * * * *", start=at(0, -1))
    tick(at(0))
    Cron.objects.filter(pk=late.pk).update(next_run_date=at(10))
    tick(at(16))
    assert (
        Tick.objects.get(cron=late, scheduled_at=at(10)).reason == "missed by 360 s (grace 300 s)"
    )
    # A null catchup_window with "all" uses the grace as its window.
    grace_all = make_cron("*/10 * * * *", start=at(0, -1), catchup="all")
    tick(at(0))
    Cron.objects.filter(pk=grace_all.pk).update(next_run_date=at(10))
    tick(at(25))
    assert statuses(grace_all) == {at(0): "fired", at(10): "skipped", at(20): "fired"}
    assert Tick.objects.get(cron=grace_all, scheduled_at=at(10)).reason == (
        "missed by 900 s (grace 300 s)"
    )


def test_catchup_all_fires_at_most_100_instants_a_pass():
    cron = make_cron("* * * * *", start=at(0, -1), catchup_window=4 * 3600, catchup="all")
    tick(at(0))
    # 150 minutes without a tick: 150 instants due, all within the window.
    first = tick(at(150, 30))
    assert (first.fired, first.skipped) == (100, 0)
    fired = [t.scheduled_at for t in ticks(cron)]
    assert fired == [at(m) for m in range(101)]
    # The cron is still due (from the next instant): the next pass goes on.
    assert Cron.objects.get(pk=cron.pk).next_run_date == at(101)
    second = tick(at(150, 31))
    assert (second.fired, second.skipped) == (50, 0)
    assert [t.scheduled_at for t in ticks(cron)] == [at(m) for m in range(151)]
    assert Run.objects.filter(cron=cron).count() == 151
    assert Cron.objects.get(pk=cron.pk).next_run_date == at(151)


def test_catchup_all_honours_overlap_policy_skip_with_a_run_going():
    cron = after_an_outage(catchup_window=1800, catchup="all", overlap_policy="skip")
    going = lifecycle.run_claim_next(thread_id=Run.objects.get(cron=cron).thread_id)
    assert going is not None and going.status == "running"
    report = tick(at(60, 30))
    assert (report.fired, report.skipped) == (0, 6)
    within = Tick.objects.filter(cron=cron, scheduled_at__gte=at(40)).order_by("scheduled_at")
    assert [t.reason for t in within] == [
        f"overlap_policy skip: run {going.run_id} is still running"
    ] * 3
    assert Run.objects.filter(cron=cron).count() == 1


def test_catchup_all_honours_overlap_policy_between_its_own_instants():
    # Nothing going: the first instant within the window fires; its run,
    # pending past its instant, overlaps the next ones.
    skip = after_an_outage(catchup_window=1800, catchup="all", overlap_policy="skip")
    finish_all(skip)
    tick(at(60, 30))
    assert [statuses(skip)[at(m)] for m in (40, 50, 60)] == ["fired", "skipped", "skipped"]
    # buffer_all: a chain, one after the other, in order.
    chain = after_an_outage(catchup_window=1800, catchup="all", overlap_policy="buffer_all")
    finish_all(chain)
    tick(at(60, 30))
    runs = list(Run.objects.filter(cron=chain, scheduled_at__gte=at(40)).order_by("scheduled_at"))
    assert [r.scheduled_at for r in runs] == [at(40), at(50), at(60)]
    assert [r.after_run_id for r in runs] == [None, runs[0].run_id, runs[1].run_id]


def test_catchup_all_stops_when_max_runs_is_reached():
    cron = after_an_outage(catchup_window=1800, catchup="all", max_runs=3)
    tick(at(60, 30))
    cron.refresh_from_db()
    assert [statuses(cron).get(at(m)) for m in (40, 50, 60)] == ["fired", "fired", None]
    assert (cron.remaining_runs, cron.enabled) == (0, False)


def finish_all(cron: Cron) -> None:
    for run in Run.objects.filter(cron=cron, status="pending"):
        claimed = lifecycle.run_claim_next(thread_id=run.thread_id)
        assert claimed is not None
        assert lifecycle.run_finish(run_id=claimed.pk, status="success", attempt=claimed.attempts)


def test_catchup_crons_stay_on_the_batch_path():
    plain = make_cron(start=START)
    policies = [
        make_cron(start=START, catchup_window=60),
        make_cron(start=START, catchup="all"),
        make_cron(start=START, jitter=30),
    ]
    for cron in [plain, *policies]:
        assert dispatch.batchable(cron)
    batchable = set(Cron.objects.filter(dispatch.BATCHABLE).values_list("pk", flat=True))
    assert batchable == {c.pk for c in [plain, *policies]}


def test_the_batch_takes_a_late_tick_only_within_the_crons_window():
    """An on-time batch fires a cron late by less than its window; a cron late
    beyond its own (smaller) window goes the per-cron way and is skipped."""
    tight = make_cron("* * * * *", start=at(0, -1), catchup_window=5)
    loose = make_cron("* * * * *", start=at(0, -1))
    report = tick(at(0, 10))
    assert (report.fired, report.skipped) == (1, 1)
    assert statuses(tight) == {at(0): "skipped"}
    assert statuses(loose) == {at(0): "fired"}


# ------------------------------------------------------------------- jitter


def test_the_offset_is_stable_within_the_jitter_and_before_the_next_instant():
    cron = make_cron("*/10 * * * *", start=START, jitter=300)
    again = Cron.objects.get(pk=cron.pk)  # another process's view of it
    offsets = []
    for minute in range(10, 24 * 60, 10):
        offset = dispatch.tick_jitter(cron, at(minute))
        # Two independent computations agree (a redelivery, a second beat).
        assert offset == dispatch.tick_jitter(again, at(minute))
        assert offset == firetime.jitter_offset(str(cron.cron_id), at(minute), 300, at(minute + 10))
        assert dt.timedelta(0) <= offset < dt.timedelta(seconds=300)
        assert offset.microseconds == 0
        offsets.append(offset)
    assert len(set(offsets)) > 50  # spread, not one fixed delay
    # Another cron, other offsets.
    other = make_cron("*/10 * * * *", start=START, jitter=300)
    assert [dispatch.tick_jitter(other, at(m)) for m in range(10, 24 * 60, 10)] != offsets


def test_a_jitter_longer_than_the_period_is_clamped_before_the_next_instant():
    cron = make_cron("* * * * *", start=START, jitter=3600)
    offsets = [dispatch.tick_jitter(cron, at(m)) for m in range(1, 500)]
    assert max(offsets) < dt.timedelta(minutes=1)
    assert max(offsets) >= dt.timedelta(seconds=30)  # the whole minute is used
    # A second-by-second schedule: no room, no offset.
    every_second = make_cron("* * * * * *", start=START, jitter=3600)
    assert {dispatch.tick_jitter(every_second, at(1, s)) for s in range(30)} == {dt.timedelta(0)}
    # No jitter, or 0: no offset.
    assert firetime.jitter_offset("x", START, None, None) == dt.timedelta(0)
    assert firetime.jitter_offset("x", START, 0, None) == dt.timedelta(0)


def jittered(minute: int, **kwargs) -> tuple[Cron, dt.timedelta]:
    """A `*/10` cron with a jitter of 300 s whose offset at `minute` is not 0."""
    for _ in range(20):
        cron = make_cron("*/10 * * * *", start=START, jitter=300, **kwargs)
        offset = dispatch.tick_jitter(cron, at(minute))
        if offset >= dt.timedelta(seconds=2):
            return cron, offset
        cron_delete(cron=cron)
    raise AssertionError("no cron with an offset")


@pytest.mark.parametrize("path", ["batch", "batch ahead", "late", "catchup all"])
def test_a_jittered_tick_keeps_its_instant_and_fires_at_instant_plus_offset(path):
    cron, offset = jittered(10, catchup="all" if path == "catchup all" else "latest")
    if path == "batch":
        report = tick(at(10))
    elif path == "batch ahead":
        report = tick(at(9, 55), lookahead=10)  # prepared 5 s before the instant
    elif path == "late":
        report = tick(at(11, 30))  # late by more than a period: the per-cron way
    else:
        Cron.objects.filter(pk=cron.pk).update(next_run_date=at(0))
        report = tick(at(11, 30))  # 00:00 and 00:10 both fire
    assert report.fired >= 1
    (fired,) = Tick.objects.filter(cron=cron, scheduled_at=at(10))
    run = Run.objects.get(pk=fired.run_id)
    assert (fired.status, fired.scheduled_at, fired.fire_at) == ("fired", at(10), at(10) + offset)
    assert (run.scheduled_at, run.not_before) == (at(10), at(10) + offset)
    if path in ("batch", "batch ahead"):
        # Workers are woken when the run may start.
        assert report.prepared == {at(10) + offset: 1}


def test_the_batch_writers_agree_on_the_jitter():
    """The one statement (PostgreSQL) and the ORM writer store the same."""
    cron, offset = jittered(10)
    cron.next_run_date = at(10)
    written = {}
    for name, writer in (("sql", dispatch.fire_batch_postgres), ("orm", dispatch.fire_batch_orm)):
        sid = transaction.savepoint()
        writer([dispatch.run_spec(cron, at(10))])
        t = Tick.objects.get(cron=cron)
        r = Run.objects.get(cron=cron)
        written[name] = (t.scheduled_at, t.fire_at, r.scheduled_at, r.not_before)
        transaction.savepoint_rollback(sid)
    assert written["sql"] == written["orm"] == (at(10), at(10) + offset, at(10), at(10) + offset)


def test_manual_backfill_and_run_now_are_not_jittered():
    cron, _ = jittered(10)
    trigger = cron_trigger(cron=cron, now=at(3, 0))
    assert Run.objects.get(pk=trigger.run_id).not_before is None
    cron_backfill(cron=cron, start=at(10), end=at(11), now=at(12))
    backfill = Tick.objects.get(cron=cron, scheduled_at=at(10))
    assert backfill.fire_at == at(10)
    assert Run.objects.get(pk=backfill.run_id).not_before is None
    run = dispatch.cron_run_now(cron=cron, now=at(20, 5))
    assert run is not None and run.not_before is None


def test_defaults_store_no_not_before():
    cron = make_cron("*/10 * * * *", start=START)
    tick(at(10))
    run = Run.objects.get(cron=cron)
    assert run.not_before is None
    assert Tick.objects.get(cron=cron).fire_at == at(10)


def a_due_jittered_run() -> tuple[Run, dt.datetime]:
    """A jittered cron's run fired at its instant, a second ago by the
    database's clock, whose not_before is still minutes away."""
    now = db_now().replace(microsecond=0)
    instant = now - dt.timedelta(seconds=1)
    # Once a day at the instant's second (seconds field last): a day to spread over.
    schedule = f"{instant.minute} {instant.hour} * * * {instant.second}"
    for _ in range(20):
        cron = make_cron(schedule, start=instant - dt.timedelta(seconds=1), jitter=3600)
        assert cron.next_run_date == instant
        if dispatch.tick_jitter(cron, instant) >= dt.timedelta(seconds=120):
            break
        cron_delete(cron=cron)
    assert ticking.fire_due(now=now).fired == 1
    run = Run.objects.get(cron=cron)
    assert run.scheduled_at == instant
    assert run.not_before >= instant + dt.timedelta(seconds=120)
    return run, instant


def test_a_worker_does_not_claim_a_jittered_run_before_its_not_before(client):
    run, instant = a_due_jittered_run()
    # Its instant has come, its not_before has not: no claim takes it.
    assert lifecycle.run_claim_next(thread_id=run.thread_id) is None
    assert lifecycle.run_claim_ready() is None
    # Nor is it stalled (the reconciler wakes nobody for it).
    assert leases.runs_reconcile(after=0)["stalled"] == 0
    # Its not_before comes: claimed, and its fire lag counts from not_before.
    started = db_now()
    not_before = started - dt.timedelta(seconds=1)
    Run.objects.filter(pk=run.pk).update(not_before=not_before)
    lag_before = metrics.counter_totals().get((metrics.LAG_SUM_MS, ""), 0)
    claimed = lifecycle.run_claim_ready()
    assert claimed is not None and claimed.pk == run.pk
    assert (claimed.scheduled_at, claimed.not_before) == (instant, not_before)
    lag_ms = metrics.counter_totals()[(metrics.LAG_SUM_MS, "")] - lag_before
    assert lag_ms == round((claimed.started_at - not_before).total_seconds() * 1000)
    assert lag_ms < 60_000  # not from the instant, minutes earlier


def test_withdrawal_takes_a_run_waiting_for_its_jittered_start():
    cron, offset = jittered(10)
    tick(at(10))
    run = Run.objects.get(cron=cron)
    # Disabled after its instant, before its not_before: it does not start.
    cron_update(cron=cron, enabled=False, now=at(10) + offset / 2)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Tick.objects.filter(cron=cron).exists()
    # Once its not_before has passed, a run stays (it may have started).
    other, offset = jittered(10)
    tick(at(10))
    cron_update(cron=other, enabled=False, now=at(10) + offset + dt.timedelta(seconds=1))
    assert Run.objects.filter(cron=other).count() == 1
    assert Tick.objects.filter(cron=other).count() == 1


def test_changing_the_jitter_withdraws_what_was_prepared_with_the_old_one():
    cron, _offset = jittered(10)
    tick(at(9, 55), lookahead=10)
    assert Run.objects.filter(cron=cron).count() == 1
    cron = cron_update(cron=cron, jitter=None, now=at(9, 56))
    assert cron.jitter is None
    assert not Run.objects.filter(cron=cron).exists()
    tick(at(10))
    run = Run.objects.get(cron=cron)
    assert (run.scheduled_at, run.not_before) == (at(10), None)


def test_a_beat_taking_over_wakes_workers_at_the_not_before():
    _cron, offset = jittered(10)
    tick(at(9, 55), lookahead=10)
    assert ticking.prepared_instants(since=at(9, 50)) == {at(10) + offset: 1}


# ---------------------------------------------------------------------- API


def counts():
    return Cron.objects.count(), PeriodicTask.objects.count()


def refused(live_server, method: str, path: str, body: dict) -> str:
    response = httpx.request(method, f"{live_server.url}{path}", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else str(detail)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"catchup_window": -1}, "catchup_window"),
        ({"catchup_window": "60"}, "catchup_window"),
        ({"catchup_window": 1.5}, "catchup_window"),
        ({"catchup_window": True}, "catchup_window"),
        ({"catchup_window": 2**31}, "catchup_window"),
        ({"catchup": "some"}, "catchup"),
        ({"catchup": 1}, "catchup"),
        ({"jitter": -5}, "jitter"),
        ({"jitter": "5"}, "jitter"),
        ({"jitter": [5]}, "jitter"),
    ],
)
def test_invalid_values_are_422_and_write_nothing(sdk, live_server, body, message):
    before = counts()
    detail = refused(
        live_server,
        "POST",
        "/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", **body},
    )
    assert message in detail
    assert counts() == before
    thread = sdk.threads.create()
    detail = refused(
        live_server,
        "POST",
        f"/threads/{thread['thread_id']}/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", **body},
    )
    assert message in detail
    assert counts() == before
    cron = sdk.crons.create("agent", schedule="0 * * * *")
    row = Cron.objects.filter(pk=cron["cron_id"]).values().get()
    assert message in refused(live_server, "PATCH", f"/runs/crons/{cron['cron_id']}", body)
    assert Cron.objects.filter(pk=cron["cron_id"]).values().get() == row


@pytest.mark.django_db(transaction=True)
def test_fields_round_trip_through_create_get_search_and_patch(sdk):
    plain = sdk.crons.create("agent", schedule="*/5 * * * *")
    assert {k: plain[k] for k in CATCHUP_FIELDS} == {
        "catchup_window": None,
        "catchup": "latest",
        "jitter": None,
    }
    cron = sdk.http.post(
        "/runs/crons",
        json={
            "assistant_id": "agent",
            "schedule": "0 9 * * *",
            "input": {"messages": []},
            "catchup_window": 1800,
            "catchup": "all",
            "jitter": 120,
        },
    )
    assert {k: cron[k] for k in CATCHUP_FIELDS} == {
        "catchup_window": 1800,
        "catchup": "all",
        "jitter": 120,
    }
    # Cron fields, not run options.
    assert not set(CATCHUP_FIELDS) & set(cron["payload"])
    assert sdk.http.get(f"/runs/crons/{cron['cron_id']}") == cron
    assert cron in sdk.crons.search()
    assert sdk.crons.search(select=["cron_id", *CATCHUP_FIELDS], limit=100) == [
        {"cron_id": cron["cron_id"], "catchup_window": 1800, "catchup": "all", "jitter": 120},
        {"cron_id": plain["cron_id"], "catchup_window": None, "catchup": "latest", "jitter": None},
    ]
    patched = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}", json={"catchup": "latest", "jitter": 0}
    )
    assert {k: patched[k] for k in CATCHUP_FIELDS} == {
        "catchup_window": 1800,
        "catchup": "latest",
        "jitter": 0,
    }
    assert not set(CATCHUP_FIELDS) & set(patched["payload"])
    # null clears (the global grace, no jitter); absent is left alone.
    cleared = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}", json={"catchup_window": None, "jitter": None}
    )
    assert {k: cleared[k] for k in CATCHUP_FIELDS} == {
        "catchup_window": None,
        "catchup": "latest",
        "jitter": None,
    }
    thread = sdk.threads.create()
    on_thread = sdk.http.post(
        f"/threads/{thread['thread_id']}/runs/crons",
        json={"assistant_id": "agent", "schedule": "0 * * * *", "catchup": "all", "jitter": 5},
    )
    assert (on_thread["catchup"], on_thread["jitter"], on_thread["catchup_window"]) == (
        "all",
        5,
        None,
    )
    row = Cron.objects.get(pk=on_thread["cron_id"])
    assert (row.catchup, row.jitter) == ("all", 5)
