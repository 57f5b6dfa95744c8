"""Crons endpoints through langgraph_sdk: fields round-trip, filters, errors."""

import datetime as dt
import json

import httpx
import pytest
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from langgraph_sdk.errors import BadRequestError, NotFoundError, UnprocessableEntityError

from crons.models import Cron

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
ALL_OPTIONS = {
    "input": QUESTION,
    "metadata": {"team": "ops", "n": 1},
    "config": {"tags": ["nightly"], "recursion_limit": 10},
    "context": {"user": "ada"},
    "interrupt_before": ["agent"],
    "interrupt_after": "*",
    "webhook": "https://example.com/hook",
    "multitask_strategy": "reject",
    "end_time": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    "enabled": False,
    "timezone": "America/New_York",
    "stream_mode": ["values", "updates"],
    "stream_subgraphs": True,
    "stream_resumable": True,
    "durability": "sync",
}


def counts():
    return Cron.objects.count(), PeriodicTask.objects.count()


def test_thread_cron_stores_and_returns_every_option(sdk):
    thread = sdk.threads.create()
    cron = sdk.crons.create_for_thread(
        thread["thread_id"], "agent", schedule="0 9 * * 1-5", **ALL_OPTIONS
    )

    assert cron["thread_id"] == thread["thread_id"]
    assert cron["assistant_id"] == "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
    assert cron["schedule"] == "0 9 * * 1-5"
    assert cron["timezone"] == "America/New_York"
    assert cron["enabled"] is False
    assert cron["on_run_completed"] is None
    assert cron["end_time"] == "2030-01-01T00:00:00+00:00"
    assert cron["metadata"] == {"team": "ops", "n": 1}
    assert cron["user_id"] is None
    payload = cron["payload"]
    for key in (
        "input",
        "config",
        "context",
        "interrupt_before",
        "interrupt_after",
        "webhook",
        "multitask_strategy",
        "stream_mode",
        "stream_subgraphs",
        "stream_resumable",
        "durability",
        "metadata",
    ):
        expected = ALL_OPTIONS[key]
        assert payload[key] == expected, key
    assert payload["assistant_id"] == "agent"
    assert sdk.crons.search(thread_id=thread["thread_id"])[0] == cron


def test_stateless_cron_defaults(sdk):
    cron = sdk.crons.create("agent", schedule="*/5 * * * *")
    assert cron["thread_id"] is None
    assert cron["on_run_completed"] == "delete"
    assert cron["enabled"] is True
    assert cron["timezone"] is None
    assert cron["end_time"] is None
    keep = sdk.crons.create("agent", schedule="*/5 * * * *", on_run_completed="keep")
    assert keep["on_run_completed"] == "keep"


def test_next_run_date_respects_timezone(sdk):
    cron = sdk.crons.create("agent", schedule="30 2 * * *", timezone="Asia/Kolkata")
    nxt = dt.datetime.fromisoformat(cron["next_run_date"])
    assert nxt.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).time() == dt.time(2, 30)
    assert nxt > dt.datetime.now(dt.UTC)


def test_cron_mirrors_a_periodic_task_without_bumping_change_tracking(sdk):
    PeriodicTasks.objects.all().delete()
    cron = sdk.crons.create("agent", schedule="0 9 1 * 1")
    row = Cron.objects.select_related("periodic_task__crontab").get(pk=cron["cron_id"])
    task = row.periodic_task
    assert task.task == "crons.fire_cron"
    assert json.loads(task.kwargs) == {"cron_id": cron["cron_id"]}
    assert (
        task.crontab.minute,
        task.crontab.hour,
        task.crontab.day_of_month,
        task.crontab.day_of_week,
    ) == ("0", "9", "1", "1")
    assert task.enabled is True
    # L is never handed to Celery's crontab.
    last = sdk.crons.create("agent", schedule="0 0 L * *")
    last_task = Cron.objects.get(pk=last["cron_id"]).periodic_task
    assert last_task.crontab is None and last_task.clocked is not None
    sdk.crons.update(cron["cron_id"], enabled=False)
    task.refresh_from_db()
    assert task.enabled is False
    sdk.crons.delete(cron["cron_id"])
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    assert PeriodicTasks.objects.count() == 0


def test_get_patch_delete(sdk):
    cron = sdk.crons.create("agent", schedule="0 * * * *", metadata={"a": 1})
    got = sdk.http.get(f"/runs/crons/{cron['cron_id']}")
    assert got == cron

    patched = sdk.crons.update(
        cron["cron_id"],
        schedule="15 * * * *",
        timezone="Europe/Paris",
        metadata={"b": 2},
        input={"messages": []},
        end_time=dt.datetime(2031, 5, 1, tzinfo=dt.UTC),
        enabled=False,
        on_run_completed="keep",
    )
    assert patched["schedule"] == "15 * * * *"
    assert patched["timezone"] == "Europe/Paris"
    assert patched["metadata"] == {"a": 1, "b": 2}
    assert patched["payload"]["input"] == {"messages": []}
    assert patched["end_time"] == "2031-05-01T00:00:00+00:00"
    assert patched["enabled"] is False
    assert patched["on_run_completed"] == "keep"
    assert patched["next_run_date"].endswith(":15:00+00:00")

    cleared = sdk.crons.update(cron["cron_id"], end_time=None)
    assert cleared["end_time"] is None

    assert sdk.crons.delete(cron["cron_id"]) is None
    with pytest.raises(NotFoundError) as err:
        sdk.crons.delete(cron["cron_id"])
    assert "not found" in str(err.value).lower()


def test_end_time_before_next_fire_leaves_no_next_run(sdk):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    cron = sdk.crons.create("agent", schedule="0 0 1 1 *", end_time=soon)
    assert cron["next_run_date"] is None
    assert sdk.crons.search()[0]["cron_id"] == cron["cron_id"]


def test_search_filters_sort_select_and_pagination(sdk, live_server):
    thread = sdk.threads.create()
    made = [
        sdk.crons.create("agent", schedule=f"{i} * * * *", metadata={"i": i, "even": i % 2 == 0})
        for i in range(5)
    ]
    sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 0 * * *", enabled=False)

    assert len(sdk.crons.search(limit=100)) == 6
    assert len(sdk.crons.search(enabled=False)) == 1
    assert len(sdk.crons.search(thread_id=thread["thread_id"])) == 1
    assert {c["metadata"]["i"] for c in sdk.crons.search(metadata={"even": True})} == {0, 2, 4}
    assert len(sdk.crons.search(assistant_id="agent", limit=100)) == 6
    assert (
        len(sdk.crons.search(assistant_id="fe096781-5601-53d2-b2f6-0d3403f7e9ca", limit=100)) == 6
    )
    asc = sdk.crons.search(sort_by="created_at", sort_order="asc", limit=100)
    assert [c["cron_id"] for c in asc][:5] == [c["cron_id"] for c in made]
    by_next = sdk.crons.search(sort_by="next_run_date", sort_order="asc", enabled=True, limit=100)
    dates = [c["next_run_date"] for c in by_next]
    assert dates == sorted(dates)
    assert sdk.crons.search(select=["cron_id", "schedule"], limit=1)[0].keys() == {
        "cron_id",
        "schedule",
    }

    page1 = httpx.post(f"{live_server.url}/runs/crons/search", json={"limit": 4, "offset": 0})
    assert page1.headers["X-Pagination-Total"] == "6"
    assert page1.headers["X-Pagination-Next"] == "4"
    page2 = httpx.post(f"{live_server.url}/runs/crons/search", json={"limit": 4, "offset": 4})
    assert len(page2.json()) == 2 and "X-Pagination-Next" not in page2.headers
    ids = {c["cron_id"] for c in page1.json()} | {c["cron_id"] for c in page2.json()}
    assert len(ids) == 6

    assert sdk.crons.count() == 6
    assert sdk.crons.count(thread_id=thread["thread_id"]) == 1
    assert sdk.crons.count(assistant_id="agent", metadata={"i": 3}) == 1
    raw = httpx.post(f"{live_server.url}/runs/crons/count", json={})
    assert raw.text == "6"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"assistant_id": "agent", "schedule": "61 * * * *"},
            422,
            "Invalid cron schedule '61 * * * *'",
        ),
        ({"assistant_id": "agent", "schedule": "not a cron"}, 422, "Invalid cron schedule"),
        (
            {"assistant_id": "agent", "schedule": "* * * * *", "timezone": "Mars/Olympus"},
            422,
            "Mars/Olympus",
        ),
        ({"assistant_id": "nope", "schedule": "* * * * *"}, 404, "Assistant 'nope' not found"),
        ({"assistant_id": "agent"}, 422, "schedule"),
        ({"assistant_id": "agent", "schedule": "* * * * *", "metadata": [1]}, 422, "metadata"),
        ({"assistant_id": "agent", "schedule": "* * * * *", "end_time": "soon"}, 422, "end_time"),
        (
            {"assistant_id": "agent", "schedule": "* * * * *", "on_run_completed": "maybe"},
            422,
            "on_run_completed",
        ),
        (
            {"assistant_id": "agent", "schedule": "* * * * *", "multitask_strategy": "x"},
            422,
            "multitask_strategy",
        ),
        (
            {"assistant_id": "agent", "schedule": "* * * * *", "interrupt_before": 3},
            422,
            "interrupt_before",
        ),
    ],
)
def test_create_errors_write_nothing(live_server, body, status, message):
    before = counts()
    response = httpx.post(f"{live_server.url}/runs/crons", json=body)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert counts() == before


def test_sdk_surfaces_error_detail(sdk):
    thread = sdk.threads.create()
    with pytest.raises(UnprocessableEntityError) as err:
        sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="* * * *")
    assert "Invalid cron schedule '* * * *'" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        sdk.crons.create_for_thread(
            "00000000-0000-0000-0000-000000000000", "agent", schedule="* * * * *"
        )
    assert "Thread with ID 00000000-0000-0000-0000-000000000000 not found" in str(err.value)
    assert counts() == (0, 0)


def test_malformed_and_oversized_bodies(live_server, settings):
    before = counts()
    bad = httpx.post(
        f"{live_server.url}/runs/crons",
        content=b'{"schedule": ',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 422
    assert "Invalid JSON" in bad.json()["detail"]
    not_object = httpx.post(f"{live_server.url}/runs/crons", json=[1, 2])
    assert not_object.status_code == 422
    settings.CRONSVC_MAX_BODY_BYTES = 1000
    big = httpx.post(
        f"{live_server.url}/runs/crons",
        json={"assistant_id": "agent", "schedule": "* * * * *", "input": {"x": "y" * 2000}},
    )
    assert big.status_code == 413
    assert "limit is 1000 bytes" in big.json()["detail"]
    assert counts() == before


def test_patch_errors_change_nothing(sdk, live_server):
    cron = sdk.crons.create("agent", schedule="0 * * * *")
    with pytest.raises(BadRequestError):
        sdk.http.patch(f"/runs/crons/{cron['cron_id']}", json={})
    with pytest.raises(UnprocessableEntityError):
        sdk.crons.update(cron["cron_id"], schedule="0 * * *")
    with pytest.raises(UnprocessableEntityError):
        sdk.crons.update(cron["cron_id"], timezone="Nowhere/Land")
    with pytest.raises(NotFoundError):
        sdk.crons.update("7e0f8a52-6fd3-4c59-9d57-e0b1f6f4e8a5", schedule="0 * * * *")
    response = httpx.get(f"{live_server.url}/runs/crons/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"] == "Invalid cron ID: must be a UUID"
    assert sdk.http.get(f"/runs/crons/{cron['cron_id']}") == cron
