"""Scheduler control endpoints (issue #15, first slice): trigger, backfill,
ticks and schedule, over HTTP against the live server, and the tick keys
behind them with the settable clock.

Runs made here stay pending (`parked_runs`): no worker takes them.
"""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from django.utils import timezone as djtz

from crons import dispatch, firetime, services, ticking
from crons.models import Cron, Tick
from runs.models import Run
from tests.factories import make_cron, make_run, make_thread, z

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
MISSING = "7e0f8a52-6fd3-4c59-9d57-e0b1f6f4e8a5"


def writes() -> tuple[int, int]:
    return Tick.objects.count(), Run.objects.count()


def iso(value: dt.datetime) -> str:
    return value.isoformat()


# ------------------------------------------------------------------ trigger

live = pytest.mark.django_db(transaction=True)


@live
def test_trigger_fires_a_manual_tick_and_answers_its_run(sdk, live_server, parked_runs):
    cron = sdk.crons.create("agent", schedule="0 0 1 1 *", input=QUESTION, enabled=False)
    cid = cron["cron_id"]

    run = sdk.http.post(f"/runs/crons/{cid}/trigger", json={})

    assert run["status"] == "pending"
    assert run["metadata"] == {"cron_id": cid}
    assert run["kwargs"]["input"] == QUESTION
    assert run["kwargs"]["config"]["configurable"]["cron_id"] == cid
    tick = Tick.objects.get(cron_id=cid)
    assert (tick.kind, tick.status, tick.reason) == ("manual", "fired", "triggered")
    assert str(tick.run_id) == run["run_id"]
    assert tick.scheduled_at.microsecond == 0 and tick.fire_at >= tick.scheduled_at
    stored = Run.objects.get(pk=run["run_id"])
    assert stored.cron_id is not None and stored.scheduled_at is None  # due now, not an instant
    # A disabled cron may be triggered; triggering leaves its schedule alone.
    after = Cron.objects.get(pk=cid)
    assert after.enabled is False and after.next_run_date.isoformat() == cron["next_run_date"]
    # Body optional.
    again = httpx.post(f"{live_server.url}/runs/crons/{cid}/trigger")
    assert again.status_code == 200 and again.json()["run_id"] != run["run_id"]


@live
def test_two_triggers_in_one_second_are_two_ticks_and_two_runs(sdk, parked_runs):
    cron = sdk.crons.create("agent", schedule="0 0 1 1 *", input=QUESTION)
    first = sdk.http.post(f"/runs/crons/{cron['cron_id']}/trigger", json=None)
    second = sdk.http.post(f"/runs/crons/{cron['cron_id']}/trigger", json=None)
    assert first["run_id"] != second["run_id"]
    # The same second, through the service with the clock held still.
    stored = Cron.objects.get(pk=cron["cron_id"])
    now = djtz.now().replace(microsecond=250_000)
    a = services.cron_trigger(cron=stored, now=now)
    b = services.cron_trigger(cron=stored, now=now)
    assert a.scheduled_at == b.scheduled_at == now.replace(microsecond=0)
    assert a.pk != b.pk and a.run_id != b.run_id
    assert Tick.objects.filter(cron=stored, kind="manual").count() == 4
    assert Run.objects.filter(cron=stored).count() == 4


@pytest.mark.django_db
def test_a_trigger_never_takes_a_scheduled_instants_place():
    start = z("2026-05-01T00:00:30Z")
    instant = z("2026-05-01T01:00:00Z")
    cron = make_cron("0 * * * *", start=start, payload={"input": QUESTION})
    services.cron_trigger(cron=cron, now=instant)  # the very second the schedule fires

    report = ticking.fire_due(now=instant)

    assert report.fired == 1
    ticks = Tick.objects.filter(cron=cron).order_by("kind")
    assert [(t.kind, t.scheduled_at, t.status) for t in ticks] == [
        ("manual", instant, "fired"),
        ("scheduled", instant, "fired"),
    ]
    assert Run.objects.filter(cron=cron).count() == 2
    assert Run.objects.filter(cron=cron, scheduled_at=instant).count() == 1


@live
def test_trigger_errors_write_nothing(sdk, live_server, parked_runs):
    cron = sdk.crons.create("agent", schedule="0 0 1 1 *")
    url = f"{live_server.url}/runs/crons"
    before = writes()
    cases = [
        (f"{url}/{MISSING}/trigger", {}, 404, f"Cron '{MISSING}' not found"),
        (f"{url}/not-a-uuid/trigger", {}, 422, "Invalid cron ID: must be a UUID"),
        (
            f"{url}/{cron['cron_id']}/trigger",
            {"overlap_policy": "sometimes"},
            422,
            "overlap_policy",
        ),
        (f"{url}/{cron['cron_id']}/trigger", {"when": "now"}, 422, "Unknown fields: when"),
        (f"{url}/{cron['cron_id']}/trigger", [1], 422, "must be a JSON object"),
    ]
    for target, body, status, detail in cases:
        response = httpx.post(target, json=body)
        assert response.status_code == status, (target, body)
        assert detail in response.json()["detail"], response.json()
    assert writes() == before


@live
def test_a_refused_trigger_is_a_409_and_a_rejected_tick(sdk, live_server, parked_runs):
    thread = make_thread()
    busy = make_run(thread)
    cron = sdk.crons.create_for_thread(
        str(thread.pk), "agent", schedule="0 0 1 1 *", multitask_strategy="reject"
    )
    response = httpx.post(f"{live_server.url}/runs/crons/{cron['cron_id']}/trigger")
    assert response.status_code == 409
    assert "busy" in response.json()["detail"]
    tick = Tick.objects.get(cron_id=cron["cron_id"])
    assert (tick.kind, tick.status, tick.run_id) == ("manual", "rejected", None)
    assert list(Run.objects.all()) == [busy]


# ----------------------------------------------------------------- backfill


def _past_hour() -> tuple[dt.datetime, dt.datetime]:
    end = djtz.now().replace(microsecond=0) - dt.timedelta(seconds=1)
    return end - dt.timedelta(hours=1), end


@live
def test_backfill_fires_each_instant_once(sdk, parked_runs):
    cron = sdk.crons.create("agent", schedule="*/10 * * * *", input=QUESTION)
    cid = cron["cron_id"]
    start, end = _past_hour()
    body = {"start": iso(start), "end": iso(end)}

    first = sdk.http.post(f"/runs/crons/{cid}/backfill", json=body)

    assert first == {"instants": 6, "fired": 6, "already_fired": 0, "rejected": 0, "skipped": 0}
    expected = firetime.next_fires("*/10 * * * *", None, start - dt.timedelta(microseconds=1), 6)
    ticks = Tick.objects.filter(cron_id=cid).order_by("scheduled_at")
    assert [t.scheduled_at for t in ticks] == expected
    assert {(t.kind, t.status, t.reason) for t in ticks} == {("backfill", "fired", "backfilled")}
    runs = Run.objects.filter(cron_id=cid)
    assert sorted(r.scheduled_at for r in runs) == expected
    assert {r.run_id for r in runs} == {t.run_id for t in ticks}

    second = sdk.http.post(f"/runs/crons/{cid}/backfill", json=body)

    assert second == {"instants": 6, "fired": 0, "already_fired": 6, "rejected": 0, "skipped": 0}
    assert Tick.objects.filter(cron_id=cid).count() == 6
    assert Run.objects.filter(cron_id=cid).count() == 6


@live
def test_backfill_fires_skipped_instants_and_leaves_fired_ones(sdk, parked_runs):
    cron = sdk.crons.create("agent", schedule="*/10 * * * *", input=QUESTION)
    stored = Cron.objects.get(pk=cron["cron_id"])
    start, end = _past_hour()
    instants = firetime.next_fires("*/10 * * * *", None, start - dt.timedelta(microseconds=1), 6)
    skipped = dispatch.record_tick(stored, instants[0], Tick.Status.SKIPPED, "missed by 900 s")
    fired = dispatch.fire_tick(stored, instants[1])  # as beat fired it
    manual = services.cron_trigger(cron=stored)  # keyed apart: no instant of the range

    report = sdk.http.post(
        f"/runs/crons/{cron['cron_id']}/backfill", json={"start": iso(start), "end": iso(end)}
    )

    assert report == {"instants": 6, "fired": 5, "already_fired": 1, "rejected": 0, "skipped": 0}
    skipped.refresh_from_db()
    assert (skipped.kind, skipped.status, skipped.reason) == ("backfill", "fired", "backfilled")
    assert Run.objects.get(pk=skipped.run_id).scheduled_at == instants[0]
    fired.refresh_from_db()
    assert (fired.kind, fired.status) == ("scheduled", "fired")
    assert Tick.objects.filter(cron=stored).exclude(pk=manual.pk).count() == 6
    assert Run.objects.filter(cron=stored).count() == 7


@pytest.mark.django_db
def test_a_backfilled_instant_is_not_fired_again_by_beat():
    start = z("2026-05-01T00:00:30Z")
    cron = make_cron("*/10 * * * *", start=start)
    instant = z("2026-05-01T00:10:00Z")
    later = instant + dt.timedelta(seconds=1)
    report = services.cron_backfill(cron=cron, start=instant, end=later, now=later)
    assert (report.instants, report.fired) == (1, 1)

    beat = ticking.fire_due(now=later)
    ticking.advance()

    assert beat.fired == 0
    assert Tick.objects.filter(cron=cron).count() == 1
    assert Run.objects.filter(cron=cron).count() == 1
    cron.refresh_from_db()
    assert cron.next_run_date == z("2026-05-01T00:20:00Z")


@pytest.mark.django_db
def test_a_skipped_instant_is_fired_once_by_two_backfills():
    cron = make_cron("*/10 * * * *", start=z("2026-05-01T00:00:30Z"), payload={"input": QUESTION})
    cron = Cron.objects.select_related("assistant", "thread").get(pk=cron.pk)
    instant = z("2026-05-01T00:10:00Z")
    skipped = dispatch.record_tick(cron, instant, Tick.Status.SKIPPED, "missed by 900 s")
    stale = Tick.objects.get(pk=skipped.pk)  # what a second backfill read before the first fired

    first = dispatch.refire_tick(cron, skipped)
    second = dispatch.refire_tick(cron, stale)

    assert (first.status, first.kind) == ("fired", "backfill")
    assert second is None  # the conditional update found it fired: its run was undone
    assert Run.objects.filter(cron=cron).count() == 1
    assert Tick.objects.get(pk=skipped.pk).run_id == first.run_id


@pytest.mark.django_db
def test_backfill_follows_the_dst_rule():
    # 30 2 * * * on the spring-forward day in New York fires at 03:00 local (07:00Z).
    cron = make_cron("30 2 * * *", "America/New_York", start=z("2026-03-01T00:00:00Z"))
    now = z("2026-03-10T00:00:00Z")
    services.cron_backfill(
        cron=cron, start=z("2026-03-07T00:00:00Z"), end=z("2026-03-09T12:00:00Z"), now=now
    )
    assert sorted(Tick.objects.filter(cron=cron).values_list("scheduled_at", flat=True)) == [
        z("2026-03-07T07:30:00Z"),
        z("2026-03-08T07:00:00Z"),
        z("2026-03-09T06:30:00Z"),
    ]


@live
def test_backfill_errors_write_nothing(sdk, live_server, settings):
    settings.CRONSVC_RETENTION_DAYS = 7
    cron = sdk.crons.create("agent", schedule="*/10 * * * *")
    every_second = sdk.crons.create("agent", schedule="* * * * * *")
    now = djtz.now()
    hour_ago = now - dt.timedelta(hours=1)
    url = f"{live_server.url}/runs/crons/{cron['cron_id']}/backfill"
    before = writes()
    cases = [
        (url, {"start": iso(hour_ago)}, 422, "end: This field is required"),
        (url, {"start": "yesterday", "end": iso(now)}, 422, "start: Datetime has wrong format"),
        (url, {"start": iso(now), "end": iso(hour_ago)}, 422, "must be before end"),
        (
            url,
            {"start": iso(hour_ago), "end": iso(now + dt.timedelta(hours=1))},
            422,
            "is in the future",
        ),
        (
            url,
            {"start": iso(now - dt.timedelta(days=8)), "end": iso(now)},
            422,
            "older than the tick retention (CRONSVC_RETENTION_DAYS=7)",
        ),
        (
            f"{live_server.url}/runs/crons/{every_second['cron_id']}/backfill",
            {"start": iso(hour_ago), "end": iso(now)},
            422,
            "more than 1000 instants",
        ),
        (
            url,
            {"start": iso(hour_ago), "end": iso(now), "overlap_policy": "sometimes"},
            422,
            "not a valid choice",
        ),
        (
            f"{live_server.url}/runs/crons/{MISSING}/backfill",
            {"start": iso(hour_ago), "end": iso(now)},
            404,
            "not found",
        ),
    ]
    for target, body, status, detail in cases:
        response = httpx.post(target, json=body)
        assert response.status_code == status, body
        assert detail in response.json()["detail"], response.json()
    assert writes() == before


# ------------------------------------------------------------ ticks, schedule


@live
def test_ticks_newest_first_with_runs_and_pagination(sdk, live_server, parked_runs):
    cron = sdk.crons.create("agent", schedule="*/10 * * * *")
    cid = cron["cron_id"]
    stored = Cron.objects.get(pk=cid)
    start, end = _past_hour()
    instants = firetime.next_fires("*/10 * * * *", None, start - dt.timedelta(microseconds=1), 6)
    dispatch.record_tick(stored, instants[0], Tick.Status.SKIPPED, "missed by 900 s")
    sdk.http.post(f"/runs/crons/{cid}/backfill", json={"start": iso(start), "end": iso(end)})
    manual = services.cron_trigger(cron=stored)
    url = f"{live_server.url}/runs/crons/{cid}/ticks"

    response = httpx.get(url, params={"limit": 3})

    assert response.status_code == 200
    assert response.headers["X-Pagination-Total"] == "7"
    assert response.headers["X-Pagination-Next"] == "3"
    items = response.json()
    assert [t["scheduled_at"] for t in items] == [
        iso(manual.scheduled_at),
        iso(instants[5]),
        iso(instants[4]),
    ]
    newest = items[0]
    assert set(newest) == {
        "scheduled_at",
        "fire_at",
        "kind",
        "status",
        "reason",
        "run_id",
        "run_status",
        "attempts",
        "created_at",
    }
    assert (newest["kind"], newest["status"], newest["reason"]) == ("manual", "fired", "triggered")
    assert (newest["run_id"], newest["run_status"], newest["attempts"]) == (
        str(manual.run_id),
        "pending",
        0,
    )
    assert items[1]["kind"] == "backfill" and items[1]["fire_at"] == iso(instants[5])
    rest = httpx.get(url, params={"limit": 10, "offset": 3}).json()
    assert [t["scheduled_at"] for t in rest] == [iso(t) for t in reversed(instants[:4])]
    assert "X-Pagination-Next" not in httpx.get(url, params={"offset": 3}).headers
    # A tick without a run, and the status filter.
    stored2 = sdk.crons.create("agent", schedule="0 0 1 1 *")
    dispatch.record_tick(
        Cron.objects.get(pk=stored2["cron_id"]), instants[0], Tick.Status.SKIPPED, "missed"
    )
    skipped = sdk.http.get(f"/runs/crons/{stored2['cron_id']}/ticks?status=skipped")
    assert [(t["status"], t["run_id"], t["run_status"], t["attempts"]) for t in skipped] == [
        ("skipped", None, None, None)
    ]
    assert sdk.http.get(f"/runs/crons/{stored2['cron_id']}/ticks?status=fired") == []


@live
def test_schedule_lists_the_next_instants(sdk, live_server):
    cron = sdk.crons.create("agent", schedule="30 2 * * *", timezone="America/New_York")
    default = sdk.http.get(f"/runs/crons/{cron['cron_id']}/schedule")
    assert default["timezone"] == "America/New_York"
    assert len(default["next"]) == 10
    three = sdk.http.get(f"/runs/crons/{cron['cron_id']}/schedule", params={"limit": 3})
    assert three["next"] == default["next"][:3]
    expected = firetime.next_fires("30 2 * * *", "America/New_York", djtz.now(), 3)
    assert three["next"] == [iso(t) for t in expected]
    assert three["next"][0] == cron["next_run_date"]
    utc = sdk.crons.create("agent", schedule="0 * * * *")
    assert sdk.http.get(f"/runs/crons/{utc['cron_id']}/schedule")["timezone"] == "UTC"


@live
def test_ticks_and_schedule_errors(sdk, live_server):
    cron = sdk.crons.create("agent", schedule="0 * * * *")
    base = f"{live_server.url}/runs/crons"
    cases = [
        (f"{base}/{MISSING}/ticks", {}, 404, "not found"),
        (f"{base}/{MISSING}/schedule", {}, 404, "not found"),
        (f"{base}/nope/ticks", {}, 422, "Invalid cron ID"),
        (f"{base}/{cron['cron_id']}/ticks", {"status": "done"}, 422, "Invalid status 'done'"),
        (f"{base}/{cron['cron_id']}/ticks", {"limit": 0}, 422, "Invalid limit 0"),
        (f"{base}/{cron['cron_id']}/ticks", {"limit": 1001}, 422, "at most 1000"),
        (f"{base}/{cron['cron_id']}/ticks", {"offset": -1}, 422, "Invalid offset -1"),
        (f"{base}/{cron['cron_id']}/schedule", {"limit": 0}, 422, "Invalid limit 0"),
        (f"{base}/{cron['cron_id']}/schedule", {"limit": 101}, 422, "at most 100"),
        (f"{base}/{cron['cron_id']}/schedule", {"limit": "x"}, 422, "Invalid limit x"),
    ]
    for target, params, status, detail in cases:
        response = httpx.get(target, params=params)
        assert response.status_code == status, (target, params)
        assert detail in response.json()["detail"], response.json()
