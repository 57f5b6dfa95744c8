"""Scheduler control fields over HTTP: overlap_policy, start_time, max_runs,
remaining_runs and paused_reason are accepted by create and PATCH (through the
SDK's HTTP client, as users send them), returned on every cron, and refused
with a 422 that writes nothing."""

import datetime as dt
from uuid import UUID

import httpx
import pytest
from django_celery_beat.models import PeriodicTask

from crons.models import Cron, Tick
from runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

POLICY_FIELDS = ("overlap_policy", "start_time", "max_runs", "remaining_runs", "paused_reason")
LATER = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)


def counts():
    return Cron.objects.count(), PeriodicTask.objects.count()


def refused(live_server, method: str, path: str, body: dict) -> str:
    """The detail of a 422 answer."""
    response = httpx.request(method, f"{live_server.url}{path}", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else str(detail)


def test_defaults_are_langgraphs_and_returned_everywhere(sdk):
    cron = sdk.crons.create("agent", schedule="*/5 * * * *")
    assert {k: cron[k] for k in POLICY_FIELDS} == {
        "overlap_policy": "allow_all",
        "start_time": None,
        "max_runs": None,
        "remaining_runs": None,
        "paused_reason": None,
    }
    thread = sdk.threads.create()
    on_thread = sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 * * * *")
    assert on_thread["overlap_policy"] is None  # it uses multitask_strategy
    assert sdk.http.get(f"/runs/crons/{cron['cron_id']}") == cron
    updated = sdk.crons.update(cron["cron_id"], enabled=False)
    assert {k: updated[k] for k in POLICY_FIELDS} == {k: cron[k] for k in POLICY_FIELDS}


def test_fields_round_trip_through_create_get_search_and_patch(sdk):
    cron = sdk.http.post(
        "/runs/crons",
        json={
            "assistant_id": "agent",
            "schedule": "0 9 * * *",
            "input": {"messages": []},
            "overlap_policy": "buffer_one",
            "start_time": LATER.isoformat(),
            "max_runs": 3,
        },
    )
    assert cron["overlap_policy"] == "buffer_one"
    assert cron["start_time"] == LATER.isoformat()
    assert (cron["max_runs"], cron["remaining_runs"], cron["paused_reason"]) == (3, 3, None)
    assert dt.datetime.fromisoformat(cron["next_run_date"]) >= LATER
    # The schedule answers what beat will fire: from start_time, max_runs of them.
    schedule = sdk.http.get(f"/runs/crons/{cron['cron_id']}/schedule", params={"limit": 5})
    assert len(schedule["next"]) == 3
    assert schedule["next"][0] == cron["next_run_date"]
    # Cron fields, not run options: not in the payload the runs are made from.
    assert not set(POLICY_FIELDS) & set(cron["payload"])
    assert cron["payload"]["input"] == {"messages": []}
    assert sdk.http.get(f"/runs/crons/{cron['cron_id']}") == cron
    assert sdk.crons.search()[0] == cron
    assert sdk.crons.search(select=["cron_id", "overlap_policy", "remaining_runs"]) == [
        {"cron_id": cron["cron_id"], "overlap_policy": "buffer_one", "remaining_runs": 3}
    ]
    patched = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}",
        json={"overlap_policy": "skip", "max_runs": 10, "start_time": None},
    )
    assert (patched["overlap_policy"], patched["start_time"]) == ("skip", None)
    assert (patched["max_runs"], patched["remaining_runs"]) == (10, 10)
    assert not set(POLICY_FIELDS) & set(patched["payload"])
    # The read-only fields sent back are ignored (and kept out of the payload).
    echoed = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}", json={"remaining_runs": 99, "paused_reason": "x"}
    )
    assert (echoed["remaining_runs"], echoed["paused_reason"]) == (10, None)
    assert not set(POLICY_FIELDS) & set(echoed["payload"])
    # null clears the limit; an absent field is left alone.
    cleared = sdk.http.patch(f"/runs/crons/{cron['cron_id']}", json={"max_runs": None})
    assert (cleared["overlap_policy"], cleared["max_runs"], cleared["remaining_runs"]) == (
        "skip",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"overlap_policy": "sometimes"}, "overlap_policy"),
        ({"max_runs": 0}, "max_runs"),
        ({"max_runs": -1}, "max_runs"),
        ({"max_runs": "three"}, "max_runs"),
        ({"start_time": "tomorrow"}, "start_time"),
        ({"start_time": "9999-12-31T23:59:59Z"}, "start_time"),  # no instant after it
    ],
)
def test_invalid_values_are_422_and_write_nothing(sdk, live_server, body, message):
    before = counts()
    assert message in refused(
        live_server,
        "POST",
        "/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", **body},
    )
    assert counts() == before
    cron = sdk.crons.create("agent", schedule="0 * * * *")
    row = Cron.objects.filter(pk=cron["cron_id"]).values().get()
    assert message in refused(live_server, "PATCH", f"/runs/crons/{cron['cron_id']}", body)
    assert Cron.objects.filter(pk=cron["cron_id"]).values().get() == row


def test_overlap_policy_on_a_thread_cron_is_422_saying_it_uses_multitask_strategy(sdk, live_server):
    thread = sdk.threads.create()
    before = counts()
    detail = refused(
        live_server,
        "POST",
        f"/threads/{thread['thread_id']}/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", "overlap_policy": "skip"},
    )
    assert "multitask_strategy" in detail and "stateless" in detail
    assert counts() == before
    cron = sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 * * * *")
    row = Cron.objects.filter(pk=cron["cron_id"]).values().get()
    detail = refused(
        live_server,
        "PATCH",
        f"/runs/crons/{cron['cron_id']}",
        {"overlap_policy": "buffer_all", "schedule": "5 * * * *"},
    )
    assert "multitask_strategy" in detail
    assert Cron.objects.filter(pk=cron["cron_id"]).values().get() == row


def test_start_time_after_end_time_is_422(sdk, live_server):
    before = counts()
    detail = refused(
        live_server,
        "POST",
        "/runs/crons",
        {
            "assistant_id": "agent",
            "schedule": "0 * * * *",
            "start_time": (LATER + dt.timedelta(days=1)).isoformat(),
            "end_time": LATER.isoformat(),
        },
    )
    assert "never fire" in detail
    assert counts() == before


def test_reenabling_a_cron_with_no_run_left_needs_a_new_max_runs(sdk, live_server):
    cron = sdk.http.post(
        "/runs/crons", json={"assistant_id": "agent", "schedule": "0 * * * *", "max_runs": 2}
    )
    # As the scheduler leaves it after the last fire (tests/integration/test_scheduler_policies.py).
    Cron.objects.filter(pk=cron["cron_id"]).update(
        remaining_runs=0, enabled=False, paused_reason="max_runs reached: 2 scheduled run(s) fired"
    )
    paused = sdk.http.get(f"/runs/crons/{cron['cron_id']}")
    assert (paused["enabled"], paused["remaining_runs"]) == (False, 0)
    assert paused["paused_reason"] == "max_runs reached: 2 scheduled run(s) fired"
    row = Cron.objects.filter(pk=cron["cron_id"]).values().get()
    path = f"/runs/crons/{cron['cron_id']}"
    for body in ({"enabled": True}, {"enabled": True, "schedule": "*/5 * * * *"}):
        detail = refused(live_server, "PATCH", path, body)
        assert "max_runs" in detail and "enabled" in detail
        assert Cron.objects.filter(pk=cron["cron_id"]).values().get() == row
    # Through the SDK's own update too.
    with pytest.raises(httpx.HTTPStatusError):
        sdk.crons.update(cron["cron_id"], enabled=True)
    # Other changes (and disabling) stay possible.
    assert sdk.crons.update(cron["cron_id"], schedule="30 * * * *")["enabled"] is False
    resumed = sdk.http.patch(path, json={"enabled": True, "max_runs": 4})
    assert (resumed["enabled"], resumed["max_runs"], resumed["remaining_runs"]) == (True, 4, 4)
    assert resumed["paused_reason"] is None
    assert resumed["next_run_date"] is not None


def test_trigger_applies_the_overlap_policy_or_a_one_off_override(sdk, live_server, parked_runs):
    cron = sdk.http.post(
        "/runs/crons",
        json={"assistant_id": "agent", "schedule": "0 0 1 1 *", "overlap_policy": "skip"},
    )
    path = f"/runs/crons/{cron['cron_id']}/trigger"
    first = sdk.http.post(path, json={})
    # Its run is pending (no worker takes it here): the next trigger overlaps it.
    response = httpx.post(f"{live_server.url}{path}", json={})
    assert response.status_code == 409
    assert (
        f"overlap_policy skip: run {first['run_id']} is still pending" in response.json()["detail"]
    )
    skipped = Tick.objects.get(cron_id=cron["cron_id"], status="skipped")
    assert (skipped.kind, skipped.run_id) == ("manual", None)
    # Overridden for one tick: allowed beside it, then buffered behind the newest.
    beside = sdk.http.post(path, json={"overlap_policy": "allow_all"})
    buffered = sdk.http.post(path, json={"overlap_policy": "buffer_all"})
    assert Run.objects.get(pk=buffered["run_id"]).after_run_id == UUID(beside["run_id"])
    assert Cron.objects.get(pk=cron["cron_id"]).overlap_policy == "skip"
    # A thread cron: 422, nothing written.
    thread = sdk.threads.create()
    on_thread = sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 0 1 1 *")
    before = (Tick.objects.count(), Run.objects.count())
    detail = refused(
        live_server,
        "POST",
        f"/runs/crons/{on_thread['cron_id']}/trigger",
        {"overlap_policy": "skip"},
    )
    assert "multitask_strategy" in detail
    assert (Tick.objects.count(), Run.objects.count()) == before
