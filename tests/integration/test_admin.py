"""The operator's admin through Django's test client: the cron form validates
through the API's checks and saves nothing on invalid input, saves go through
the crons services (the mirrored PeriodicTask stays in step), list actions,
the runs pages, the read-only PeriodicTask mirror, and the round trip with
langgraph_sdk."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone as djtz
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from crons import firetime
from crons.forms import schedule_description
from crons.models import Cron, Tick
from crons.services import cron_create, validate_schedule
from cronsvc.errors import Invalid
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from runs.services import run_create
from threads.services import thread_create

CRONS = "/admin/crons/cron/"
ADD = CRONS + "add/"
QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


def change_url(cron) -> str:
    return f"{CRONS}{cron.pk}/change/"


def text(response) -> str:
    """The page's text without tags, whitespace collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", unescape(body))


def form_errors(response) -> dict[str, list[str]]:
    return {
        name: list(errors) for name, errors in response.context["adminform"].form.errors.items()
    }


def add_data(assistant, **overrides) -> dict:
    data = {
        "assistant": str(assistant.pk),
        "thread": "",
        "schedule": "30 9 * * 1-5",
        "timezone": "Europe/Paris",
        "enabled": "on",
        "end_time_0": "",
        "end_time_1": "",
        "on_run_completed": "keep",
        "payload": json.dumps(QUESTION),
        "metadata": json.dumps({"team": "ops"}),
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def change_data(cron, **overrides) -> dict:
    end = djtz.localtime(cron.end_time) if cron.end_time else None
    data = {
        "schedule": cron.schedule,
        "timezone": cron.timezone or "",
        "enabled": "on" if cron.enabled else None,
        "end_time_0": end.strftime("%Y-%m-%d") if end else "",
        "end_time_1": end.strftime("%H:%M:%S") if end else "",
        "on_run_completed": cron.on_run_completed or "",
        "payload": json.dumps(cron.payload),
        "metadata": json.dumps(cron.metadata),
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def agent(db):
    return assistant_get_or_404("agent")


def counts() -> tuple[int, int, int]:
    return Cron.objects.count(), PeriodicTask.objects.count(), CrontabSchedule.objects.count()


# --- login ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_is_behind_login(client):
    response = client.get(CRONS)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={CRONS}"


# --- the cron form: invalid input saves nothing --------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"schedule": "61 * * * *"},
            "schedule",
            "Invalid cron schedule '61 * * * *': [61 * * * *] is not acceptable, out of range",
        ),
        (
            {"schedule": "* * *"},
            "schedule",
            (
                "Invalid cron schedule '* * *': expected 5 fields (minute hour day-of-month month "
                "day-of-week) or 6 (the same plus a trailing seconds field), got 3"
            ),
        ),
        ({"schedule": "0 0 30 2 *"}, "schedule", None),
        ({"schedule": "@reboot"}, "schedule", None),
        ({"timezone": "Mars/Base"}, "timezone", "Unknown timezone 'Mars/Base'"),
        ({"payload": "{not json"}, "payload", "Enter a valid JSON."),
        ({"payload": "[1, 2]"}, "payload", "Enter a JSON object ({...})."),
        (
            {"payload": json.dumps({"multitask_strategy": "sometimes"})},
            "payload",
            'multitask_strategy: "sometimes" is not a valid choice.',
        ),
        ({"metadata": '"ops"'}, "metadata", "Enter a JSON object ({...})."),
        ({"schedule": ""}, "schedule", "This field is required."),
    ],
)
def test_invalid_input_is_a_form_error_and_nothing_is_saved(
    admin_client, agent, overrides, field, message
):
    before = counts()

    response = admin_client.post(ADD, add_data(agent, **overrides))

    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == [field]
    if message is None:  # whatever the API's check says
        with pytest.raises(Invalid) as err:
            validate_schedule(overrides["schedule"], "Europe/Paris")
        message = err.value.detail
    assert errors[field] == [message]
    assert "Please correct the error below." in text(response)
    assert counts() == before
    assert PeriodicTasks.objects.count() == 0


# --- saving goes through the services ------------------------------------------


@pytest.mark.django_db
def test_add_saves_through_cron_create_and_mirrors_a_periodic_task(admin_client, agent):
    before = djtz.now()

    response = admin_client.post(ADD, add_data(agent))

    cron = Cron.objects.get()
    assert response.status_code == 302
    assert response["Location"] == CRONS
    assert cron.assistant == agent
    assert cron.thread is None
    assert cron.schedule == "30 9 * * 1-5"
    assert cron.timezone == "Europe/Paris"
    assert cron.enabled is True
    assert cron.end_time is None
    assert cron.on_run_completed == "keep"
    assert cron.payload == QUESTION
    assert cron.metadata == {"team": "ops"}
    assert cron.next_run_date == firetime.next_fire("30 9 * * 1-5", "Europe/Paris", before)
    task = cron.periodic_task
    assert task.name == f"cron {cron.cron_id}"
    assert task.task == "crons.fire_cron"
    assert json.loads(task.kwargs) == {"cron_id": str(cron.cron_id)}
    assert task.enabled is True
    assert (
        task.crontab.minute,
        task.crontab.hour,
        task.crontab.day_of_week,
        str(task.crontab.timezone),
    ) == ("30", "9", "1-5", "Europe/Paris")
    # Saved like every cron write: without bumping django-celery-beat's change tracking.
    assert PeriodicTasks.objects.count() == 0
    assert LogEntry.objects.get().object_id == str(cron.cron_id)


@pytest.mark.django_db
def test_add_a_thread_cron_with_utc_and_an_end_time(admin_client, agent):
    thread = thread_create()

    response = admin_client.post(
        ADD,
        add_data(
            agent,
            thread=str(thread.pk),
            timezone="",
            on_run_completed="keep",
            end_time_0="2031-01-02",
            end_time_1="03:04:05",
            _save=None,
            _continue="Save and continue editing",
        ),
    )

    cron = Cron.objects.get()
    assert response["Location"] == change_url(cron)
    assert cron.thread == thread
    assert cron.timezone is None
    # As the API: a thread cron has no on_run_completed.
    assert cron.on_run_completed is None
    assert cron.end_time == dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert str(cron.periodic_task.crontab.timezone) == "UTC"
    assert cron.periodic_task.expires == cron.end_time


@pytest.mark.django_db
def test_change_goes_through_cron_update_and_keeps_the_mirror_in_step(admin_client, agent):
    cron = cron_create(assistant=agent, schedule="0 * * * *", payload=QUESTION, metadata={"a": 1})
    task_pk = cron.periodic_task_id
    before = djtz.now()

    response = admin_client.post(
        change_url(cron),
        change_data(
            cron,
            schedule="15 6 * * *",
            timezone="Asia/Kolkata",
            end_time_0="2032-05-01",
            end_time_1="00:00:00",
            on_run_completed="keep",
            payload=json.dumps({**QUESTION, "config": {"tags": ["nightly"]}}),
            metadata=json.dumps({"a": 2, "b": 3}),
        ),
    )

    assert response.status_code == 302
    cron.refresh_from_db()
    assert cron.schedule == "15 6 * * *"
    assert cron.timezone == "Asia/Kolkata"
    assert cron.end_time == dt.datetime(2032, 5, 1, tzinfo=dt.UTC)
    assert cron.on_run_completed == "keep"
    assert cron.payload == {**QUESTION, "config": {"tags": ["nightly"]}}
    assert cron.metadata == {"a": 2, "b": 3}
    assert cron.next_run_date == firetime.next_fire("15 6 * * *", "Asia/Kolkata", before)
    task = PeriodicTask.objects.select_related("crontab").get(pk=task_pk)
    assert cron.periodic_task_id == task_pk
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == (
        "15",
        "6",
        "Asia/Kolkata",
    )
    assert task.expires == cron.end_time
    assert "'15 6 * * *' in Asia/Kolkata" in task.description


@pytest.mark.django_db
def test_an_invalid_change_saves_nothing(admin_client, agent):
    cron = cron_create(assistant=agent, schedule="0 * * * *", timezone="UTC")
    stored = Cron.objects.values().get(pk=cron.pk)
    task = PeriodicTask.objects.values().get(pk=cron.periodic_task_id)

    for overrides, field in [
        ({"schedule": "0 25 * * *"}, "schedule"),
        ({"timezone": "Europe/Pariss"}, "timezone"),
        ({"payload": "{"}, "payload"),
    ]:
        response = admin_client.post(change_url(cron), change_data(cron, **overrides))
        assert response.status_code == 200
        assert list(form_errors(response)) == [field]

    assert Cron.objects.values().get(pk=cron.pk) == stored
    assert PeriodicTask.objects.values().get(pk=cron.periodic_task_id) == task


@pytest.mark.django_db
def test_removing_payload_or_metadata_keys_is_refused(admin_client, agent):
    cron = cron_create(
        assistant=agent, schedule="0 * * * *", payload=QUESTION, metadata={"a": 1, "b": 2}
    )

    response = admin_client.post(
        change_url(cron), change_data(cron, payload="{}", metadata=json.dumps({"a": 1}))
    )

    assert form_errors(response) == {
        "payload": [
            (
                "Keys cannot be removed here (input): edits are merged into the stored payload. "
                "Set them to null instead."
            )
        ],
        "metadata": [
            (
                "Keys cannot be removed here (b): edits are merged into the stored metadata. "
                "Set them to null instead."
            )
        ],
    }
    cron.refresh_from_db()
    assert (cron.payload, cron.metadata) == (QUESTION, {"a": 1, "b": 2})


# --- the cron page -------------------------------------------------------------


@pytest.mark.django_db
def test_cron_page_shows_description_and_the_next_five_fires_in_its_timezone_and_utc(
    admin_client, agent
):
    cron = cron_create(assistant=agent, schedule="30 9 * * 1-5", timezone="America/New_York")
    now = djtz.now()

    page = text(admin_client.get(change_url(cron)))

    assert "At 09:30, Monday through Friday" in page
    fires = firetime.next_fires("30 9 * * 1-5", "America/New_York", now, 5)
    assert len(fires) == 5
    for instant in fires:
        local = instant.astimezone(ZoneInfo("America/New_York"))
        assert f"{local:%a %Y-%m-%d} 09:30:00 {local:%Z} {instant:%Y-%m-%d %H:%M:%S} UTC" in page
    assert "Recent ticks (0)" in page
    assert "Runs (0)" in page


@pytest.mark.django_db
def test_disabled_or_ended_cron_page_says_so(admin_client, agent):
    disabled = cron_create(assistant=agent, schedule="0 0 * * *", enabled=False)
    ended = cron_create(
        assistant=agent, schedule="0 0 1 1 *", end_time=djtz.now() + dt.timedelta(seconds=5)
    )

    assert "The cron is disabled: these are the times it would fire." in text(
        admin_client.get(change_url(disabled))
    )
    assert "none (the end time has passed)" in text(admin_client.get(change_url(ended)))


def test_descriptions_follow_croniter_field_order():
    assert schedule_description("30 9 * * 1-5") == "At 09:30, Monday through Friday"
    assert schedule_description("@daily") == "At 00:00"
    # croniter's sixth field is seconds (cron-descriptor's first).
    assert schedule_description("* * * * * */10") == "Every 10 seconds"
    assert schedule_description("0 0 L * *") == "At 00:00, on the last day of the month"
    assert schedule_description("0 0 * * L5") == "At 00:00, on the last Friday of the month"
    assert schedule_description("not a schedule") == ""


@pytest.mark.django_db
def test_cron_page_lists_ticks_with_reasons_and_paginates_runs_newest_first(admin_client, agent):
    thread = thread_create()
    cron = cron_create(assistant=agent, thread=thread, schedule="0 * * * *")
    base = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    runs = [
        run_create(
            thread=thread,
            assistant=agent,
            cron_id=cron.cron_id,
            scheduled_at=base + dt.timedelta(hours=i),
        )
        for i in range(12)
    ]
    Tick.objects.create(cron=cron, scheduled_at=base, status="fired", run_id=runs[0].run_id)
    Tick.objects.create(
        cron=cron,
        scheduled_at=base - dt.timedelta(hours=1),
        status="skipped",
        reason="missed by 4000 s (grace 300 s)",
    )

    first = admin_client.get(change_url(cron))
    second = admin_client.get(change_url(cron) + "?runs_page=2")

    page = text(first)
    assert "Recent ticks (2)" in page
    assert "skipped missed by 4000 s (grace 300 s)" in page
    assert "Runs (12), newest first" in page
    assert [str(r.run_id) for r in first.context["runs_page"]] == [
        str(r.run_id) for r in reversed(runs[2:])
    ]
    assert [r.run_id for r in second.context["runs_page"]] == [runs[1].run_id, runs[0].run_id]
    assert "page 2 of 2" in text(second)
    # The thread page shows the same runs.
    thread_page = admin_client.get(f"/admin/threads/thread/{thread.pk}/change/")
    assert thread_page.status_code == 200
    assert [r.run_id for r in thread_page.context["runs_page"]] == [
        r.run_id for r in reversed(runs[2:])
    ]
    assert "0 * * * * (UTC)" in text(thread_page)


# --- the cron list ---------------------------------------------------------------


@pytest.mark.django_db
def test_list_columns_filters_and_search(admin_client, agent):
    thread = thread_create()
    hourly = cron_create(assistant=agent, schedule="0 * * * *", thread=thread)
    weekdays = cron_create(
        assistant=agent, schedule="30 9 * * 1-5", timezone="Europe/Paris", enabled=False
    )
    run_create(thread=thread, assistant=agent, cron_id=hourly.cron_id, scheduled_at=djtz.now())

    def listed(query=""):
        response = admin_client.get(CRONS + query)
        assert response.status_code == 200
        return {c.pk for c in response.context["cl"].result_list}

    page = text(admin_client.get(CRONS))
    for header in (
        "assistant",
        "thread",
        "schedule",
        "description",
        "timezone",
        "enabled",
        "next run",
        "last run status",
    ):
        assert header in page.lower()
    assert "At 09:30, Monday through Friday" in page
    assert "Every hour" in page
    assert "Europe/Paris" in page
    assert "pending" in page  # hourly's last run
    assert listed() == {hourly.pk, weekdays.pk}
    assert listed("?enabled__exact=0") == {weekdays.pk}
    assert listed("?has_thread=yes") == {hourly.pk}
    assert listed("?has_thread=no") == {weekdays.pk}
    assert listed(f"?assistant__assistant_id__exact={agent.pk}") == {hourly.pk, weekdays.pk}
    assert listed("?q=1-5") == {weekdays.pk}
    assert listed(f"?q={str(hourly.pk)[:13]}") == {hourly.pk}
    assert listed(f"?q={thread.pk}") == {hourly.pk}


# --- actions -----------------------------------------------------------------------


def act(client, action: str, crons, **extra):
    return client.post(
        CRONS,
        {"action": action, "_selected_action": [str(c.pk) for c in crons], **extra},
        follow=True,
    )


@pytest.mark.django_db
def test_enable_and_disable_actions_go_through_cron_update(admin_client, agent):
    a = cron_create(assistant=agent, schedule="0 * * * *")
    b = cron_create(assistant=agent, schedule="0 0 L * *", enabled=False)

    response = act(admin_client, "disable_crons", [a, b])

    assert "1 cron(s) disabled; 1 already disabled." in text(response)
    a.refresh_from_db()
    assert (a.enabled, a.periodic_task.enabled) == (False, False)

    before = djtz.now()
    response = act(admin_client, "enable_crons", [a, b])

    assert "2 cron(s) enabled; 0 already enabled." in text(response)
    for cron in (a, b):
        cron.refresh_from_db()
        assert cron.enabled is True
        assert cron.periodic_task.enabled is True
        assert cron.next_run_date == firetime.next_fire(cron.schedule, None, before)
    # The L schedule's mirror is a one-off clocked task at its next fire.
    assert b.periodic_task.clocked.clocked_time == b.next_run_date
    assert PeriodicTasks.objects.count() == 0


@pytest.mark.django_db
def test_trigger_fires_a_manual_tick_through_cron_trigger(admin_client, agent):
    thread = thread_create()
    cron = cron_create(
        assistant=agent, thread=thread, schedule="0 0 1 1 *", payload=QUESTION, enabled=False
    )
    next_run = cron.next_run_date

    response = act(admin_client, "trigger", [cron])

    run = Run.objects.get()
    tick = Tick.objects.get()
    assert (run.cron_id, run.thread_id, run.status) == (cron.cron_id, thread.pk, "pending")
    assert run.kwargs == {**QUESTION, "config": {"configurable": {"cron_id": str(cron.cron_id)}}}
    assert run.metadata == {"cron_id": str(cron.cron_id)}
    # A manual tick, as the API's trigger fires: keyed apart, its run due at once.
    assert (tick.kind, tick.status, tick.reason) == ("manual", "fired", "triggered")
    assert tick.run_id == run.run_id and run.scheduled_at is None
    assert f"triggered, run {run.run_id} created (pending)" in text(response)
    cron.refresh_from_db()
    # Triggering a disabled cron leaves its schedule as it was.
    assert (cron.enabled, cron.next_run_date) == (False, next_run)

    # Two triggers in one go are two ticks and two runs.
    act(admin_client, "trigger", [cron])
    assert Tick.objects.filter(cron=cron, kind="manual").count() == 2
    assert Run.objects.filter(cron=cron).count() == 2


@pytest.mark.django_db
def test_trigger_reports_a_rejected_tick(admin_client, agent):
    thread = thread_create()
    cron = cron_create(
        assistant=agent,
        thread=thread,
        schedule="0 0 1 1 *",
        payload={**QUESTION, "multitask_strategy": "reject"},
    )
    busy = run_create(thread=thread, assistant=agent)

    response = act(admin_client, "trigger", [cron])

    assert list(Run.objects.all()) == [busy]
    tick = Tick.objects.get()
    assert (tick.kind, tick.status) == ("manual", "rejected")
    assert f"not fired, no run created (rejected: {tick.reason})" in text(response)


def last_ten_minutes() -> tuple[dt.datetime, dt.datetime]:
    """[start, end) holding the six instants of */10 * * * * of the past hour."""
    end = djtz.now().replace(second=0, microsecond=0)
    end -= dt.timedelta(minutes=end.minute % 10)
    return end - dt.timedelta(hours=1), end


@pytest.mark.django_db
def test_backfill_asks_for_a_range_then_fires_each_instant_once(admin_client, agent):
    a = cron_create(assistant=agent, schedule="*/10 * * * *", payload=QUESTION)
    b = cron_create(assistant=agent, schedule="*/30 * * * *", payload=QUESTION, enabled=False)
    start, end = last_ten_minutes()

    # The action renders a form page for the range; nothing is fired yet.
    page = act(admin_client, "backfill", [a, b])
    assert page.status_code == 200
    assert page.templates[0].name == "admin/crons/cron/backfill.html"
    assert {c.pk for c in page.context["crons"]} == {a.pk, b.pk}
    assert "Backfill crons" in text(page) and "*/30 * * * * (UTC)" in text(page)
    assert Tick.objects.count() == 0

    body = {"start": start.isoformat(), "end": end.isoformat(), "apply": "Backfill"}
    done = act(admin_client, "backfill", [a, b], **body)

    assert done.redirect_chain[-1][0] == CRONS
    page = text(done)
    assert "backfilled 6 instant(s): 6 fired, 0 already fired, 0 rejected." in page
    assert "backfilled 2 instant(s): 2 fired, 0 already fired, 0 rejected." in page
    for cron, step in ((a, 10), (b, 30)):
        ticks = list(Tick.objects.filter(cron=cron).order_by("scheduled_at"))
        instants = [start + dt.timedelta(minutes=m) for m in range(60)]
        assert [t.scheduled_at for t in ticks] == [t for t in instants if t.minute % step == 0]
        assert {(t.kind, t.status, t.reason) for t in ticks} == {
            ("backfill", "fired", "backfilled")
        }
        runs = Run.objects.filter(cron=cron)
        assert {r.run_id for r in runs} == {t.run_id for t in ticks}
        assert {r.scheduled_at for r in runs} == {t.scheduled_at for t in ticks}
    b.refresh_from_db()
    assert b.enabled is False  # a disabled cron may be backfilled, and stays disabled

    # The same range again fires nothing new.
    again = act(admin_client, "backfill", [a], **body)
    assert "backfilled 6 instant(s): 0 fired, 6 already fired, 0 rejected." in text(again)
    assert Tick.objects.count() == 8 and Run.objects.count() == 8


@pytest.mark.django_db
def test_backfill_with_an_invalid_range_says_why_and_fires_nothing(admin_client, agent):
    hourly = cron_create(assistant=agent, schedule="0 * * * *")
    every_second = cron_create(assistant=agent, schedule="* * * * * *")
    # Before the database's now (the test's transaction began earlier).
    now = djtz.now() - dt.timedelta(minutes=1)

    def backfill(crons, start, end):
        return act(
            admin_client,
            "backfill",
            crons,
            start=start.isoformat() if isinstance(start, dt.datetime) else start,
            end=end.isoformat() if isinstance(end, dt.datetime) else end,
            apply="Backfill",
        )

    future = backfill([hourly], now - dt.timedelta(hours=2), now + dt.timedelta(hours=1))
    assert future.templates[0].name == "admin/crons/cron/backfill.html"
    assert "is in the future" in text(future)
    assert "Enter a valid date/time." in text(backfill([hourly], "not a date", now))
    # Valid for one cron, too many instants for the other: neither fires.
    both = backfill([hourly, every_second], now - dt.timedelta(hours=2), now)
    assert f"Cron {every_second.cron_id} (* * * * * *): " in text(both)
    assert "more than 1000 instants" in text(both)
    assert Tick.objects.count() == 0 and Run.objects.count() == 0


@pytest.mark.django_db
def test_cron_page_ticks_show_fire_at_run_status_and_attempts(admin_client, agent):
    cron = cron_create(assistant=agent, schedule="*/10 * * * *", payload=QUESTION)
    start, end = last_ten_minutes()
    act(
        admin_client,
        "backfill",
        [cron],
        start=(end - dt.timedelta(minutes=10)).isoformat(),
        end=end.isoformat(),
        apply="Backfill",
    )
    act(admin_client, "trigger", [cron])
    manual = Tick.objects.get(kind="manual")
    Run.objects.filter(pk=manual.run_id).update(status="success", attempts=2)
    backfilled = Tick.objects.get(kind="backfill")
    old = Tick.objects.create(
        cron=cron, scheduled_at=start, status="skipped", reason="missed", fire_at=None
    )

    response = admin_client.get(change_url(cron))

    rows = {t.pk: t for t in response.context["ticks"]}
    assert (rows[manual.pk].run_status, rows[manual.pk].attempts) == ("success", 2)
    assert rows[manual.pk].fires_at == manual.fire_at
    assert (rows[backfilled.pk].run_status, rows[backfilled.pk].attempts) == ("pending", 0)
    assert rows[backfilled.pk].fires_at == backfilled.scheduled_at
    assert (rows[old.pk].run_status, rows[old.pk].attempts) == (None, None)
    assert rows[old.pk].fires_at == old.scheduled_at  # recorded before fire_at existed
    page = response.content.decode()
    for header in ("fires at", "run status", "attempts"):
        assert f"<th>{header}</th>" in page
    cells = re.findall(
        r'<td class="tick-fire-at">([^<]*)</td>.*?<td class="tick-run-status">([^<]*)</td>\s*'
        r'<td class="tick-attempts">([^<]*)</td>',
        page,
        re.S,
    )
    assert cells == [
        (f"{manual.fire_at:%Y-%m-%d %H:%M:%S} UTC", "success", "2"),
        (f"{backfilled.scheduled_at:%Y-%m-%d %H:%M:%S} UTC", "pending", "0"),
        (f"{old.scheduled_at:%Y-%m-%d %H:%M:%S} UTC", "-", "-"),
    ]


@pytest.mark.django_db
def test_delete_action_and_delete_page_go_through_cron_delete(admin_client, agent):
    a = cron_create(assistant=agent, schedule="0 * * * *")
    b = cron_create(assistant=agent, schedule="5 * * * *")
    c = cron_create(assistant=agent, schedule="10 * * * *")

    confirm = act(admin_client, "delete_selected", [a, b])
    assert "Are you sure you want to delete the selected crons?" in text(confirm)
    act(admin_client, "delete_selected", [a, b], post="yes")
    admin_client.post(f"{CRONS}{c.pk}/delete/", {"post": "yes"})

    assert Cron.objects.count() == 0
    assert PeriodicTask.objects.count() == 0


# --- the mirrored PeriodicTask ---------------------------------------------------


@pytest.mark.django_db
def test_mirrored_periodic_task_is_read_only_with_a_link_to_its_cron(admin_client, agent):
    cron = cron_create(assistant=agent, schedule="0 0 L * *", timezone="Europe/Paris")
    task = cron.periodic_task
    url = f"/admin/django_celery_beat/periodictask/{task.pk}/change/"
    stored = PeriodicTask.objects.values().get(pk=task.pk)

    page = admin_client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{change_url(cron)}"' in html
    assert "Edit on the cron page: 0 0 L * * (Europe/Paris)" in text(page)
    assert 'name="_save"' not in html
    assert admin_client.post(url, {"name": "hijacked", "task": "x"}).status_code == 403
    assert (
        admin_client.post(
            f"/admin/django_celery_beat/periodictask/{task.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    # The cron page links back.
    assert f'href="{url}"' in admin_client.get(change_url(cron)).content.decode()

    for action in ("disable_tasks", "toggle_tasks", "run_tasks"):
        response = admin_client.post(
            "/admin/django_celery_beat/periodictask/",
            {"action": action, "_selected_action": [str(task.pk)]},
            follow=True,
        )
        assert "1 task(s) left alone: they mirror cronsvc crons" in text(response)
    response = admin_client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "delete_selected", "_selected_action": [str(task.pk)], "post": "yes"},
        follow=True,
    )
    assert PeriodicTask.objects.values().get(pk=task.pk) == stored
    assert PeriodicTasks.objects.count() == 0

    listing = admin_client.get("/admin/django_celery_beat/periodictask/")
    assert f'href="{change_url(cron)}"' in listing.content.decode()


@pytest.mark.django_db
def test_other_periodic_tasks_stay_editable(admin_client):
    schedule = CrontabSchedule.objects.create(minute="0", hour="4")
    task = PeriodicTask.objects.create(
        name="cleanup", task="celery.backend_cleanup", crontab=schedule
    )

    page = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")

    assert 'name="_save"' in page.content.decode()
    act_response = admin_client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [str(task.pk)]},
        follow=True,
    )
    assert "1 task was successfully disabled" in text(act_response)
    task.refresh_from_db()
    assert task.enabled is False


# --- runs, threads, assistants ----------------------------------------------------


@pytest.mark.django_db
def test_run_pages_show_status_cron_thread_timing_and_error(admin_client, agent):
    thread = thread_create()
    cron = cron_create(assistant=agent, thread=thread, schedule="0 * * * *")
    scheduled = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    run = run_create(thread=thread, assistant=agent, cron_id=cron.cron_id, scheduled_at=scheduled)
    Run.objects.filter(pk=run.pk).update(
        status="error",
        started_at=scheduled,
        finished_at=scheduled + dt.timedelta(seconds=2.5),
        error="ValueError: the graph raised",
    )

    listing = text(admin_client.get("/admin/runs/run/"))
    page = text(admin_client.get(f"/admin/runs/run/{run.pk}/change/"))
    errors_only = admin_client.get("/admin/runs/run/?status__exact=error&origin=cron")

    for content in (listing, page):
        assert str(run.run_id) in content
        assert "ValueError: the graph raised" in content
        assert "2.50 s" in content
        assert "0 * * * *" in content
        assert str(thread.pk) in content
    assert [r.pk for r in errors_only.context["cl"].result_list] == [run.pk]
    assert admin_client.get("/admin/runs/run/add/").status_code == 403


@pytest.mark.django_db
def test_assistants_and_threads_are_read_only(admin_client, agent):
    thread = thread_create(metadata={"owner": "ops"})
    cron_create(assistant=agent, schedule="0 * * * *")

    assistants = admin_client.get("/admin/cronsvc/assistant/")
    threads = admin_client.get("/admin/threads/thread/")

    assert assistants.status_code == threads.status_code == 200
    assert {a.pk: a.n_crons for a in assistants.context["cl"].result_list}[agent.pk] == 1
    assert admin_client.get(f"/admin/cronsvc/assistant/{agent.pk}/change/").status_code == 200
    assert (
        'name="_save"'
        not in admin_client.get(f"/admin/threads/thread/{thread.pk}/change/").content.decode()
    )
    assert admin_client.get("/admin/threads/thread/add/").status_code == 403
    assert admin_client.get("/admin/cronsvc/assistant/add/").status_code == 403


# --- the SDK and the admin see the same crons --------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_cron_made_in_the_admin_is_what_the_sdk_returns(admin_client, sdk):
    thread = sdk.threads.create()
    agent = assistant_get_or_404("agent")
    admin_client.post(
        ADD,
        add_data(
            agent,
            thread=thread["thread_id"],
            schedule="0 9 * * 1-5",
            timezone="America/New_York",
            enabled=None,
            end_time_0="2030-01-01",
            end_time_1="00:00:00",
            payload=json.dumps({**QUESTION, "config": {"tags": ["nightly"]}}),
            metadata=json.dumps({"team": "ops", "n": 1}),
        ),
    )
    cron = Cron.objects.get()

    (found,) = sdk.crons.search(thread_id=thread["thread_id"])

    assert found == {
        "cron_id": str(cron.cron_id),
        "assistant_id": str(agent.pk),
        "thread_id": thread["thread_id"],
        "on_run_completed": None,
        "end_time": "2030-01-01T00:00:00+00:00",
        "schedule": "0 9 * * 1-5",
        "timezone": "America/New_York",
        "created_at": cron.created_at.isoformat(),
        "updated_at": cron.updated_at.isoformat(),
        "user_id": None,
        "payload": {**QUESTION, "config": {"tags": ["nightly"]}},
        "next_run_date": cron.next_run_date.isoformat(),
        "metadata": {"team": "ops", "n": 1},
        "enabled": False,
        "overlap_policy": None,  # a thread cron
        "start_time": None,
        "max_runs": None,
        "remaining_runs": None,
        "paused_reason": None,
        "catchup_window": None,
        "catchup": "latest",
        "jitter": None,
        "retry_policy": {
            "max_attempts": 1,
            "initial_interval": 1,
            "backoff_coefficient": 2.0,
            "max_interval": 100,
        },
        "max_consecutive_failures": None,
        "consecutive_failures": 0,
        "last_run_date": None,
        "last_run_status": None,
    }
    assert cron.next_run_date == firetime.next_fire(
        "0 9 * * 1-5", "America/New_York", cron.created_at
    )
    # Enabling it in the admin is what the SDK sees next.
    act(admin_client, "enable_crons", [cron])
    (found,) = sdk.crons.search(thread_id=thread["thread_id"])
    cron.refresh_from_db()
    assert found["enabled"] is True
    assert found["updated_at"] == cron.updated_at.isoformat()


@pytest.mark.django_db(transaction=True)
def test_a_cron_made_through_the_api_is_editable_in_the_admin(admin_client, sdk):
    made = sdk.crons.create(
        "agent",
        schedule="*/5 * * * *",
        input=QUESTION["input"],
        metadata={"team": "ops"},
        on_run_completed="keep",
    )
    cron = Cron.objects.get(pk=made["cron_id"])

    page = admin_client.get(change_url(cron))
    assert page.status_code == 200
    assert "Every 5 minutes" in text(page)
    response = admin_client.post(
        change_url(cron),
        change_data(
            cron,
            schedule="0 12 * * *",
            timezone="Asia/Tokyo",
            metadata=json.dumps({"team": "ops", "owner": "ada"}),
        ),
    )
    assert response.status_code == 302

    got = sdk.crons.search(assistant_id="agent")[0]
    assert got["cron_id"] == made["cron_id"]
    assert got["schedule"] == "0 12 * * *"
    assert got["timezone"] == "Asia/Tokyo"
    assert got["metadata"] == {"team": "ops", "owner": "ada"}
    assert got["payload"] == made["payload"]  # the request as sent, untouched
    assert got["on_run_completed"] == "keep"
    assert got["enabled"] is True
    nxt = dt.datetime.fromisoformat(got["next_run_date"])
    assert nxt.astimezone(dt.timezone(dt.timedelta(hours=9))).time() == dt.time(12, 0)
    mirror = PeriodicTask.objects.select_related("crontab").get(pk=cron.periodic_task_id)
    assert (mirror.crontab.minute, mirror.crontab.hour, str(mirror.crontab.timezone)) == (
        "0",
        "12",
        "Asia/Tokyo",
    )
