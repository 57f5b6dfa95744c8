"""The admin edits the scheduler control fields through the crons services,
with the API's rules: overlap_policy on stateless crons only, a cron with no
run left of its max_runs enabled again only with a new max_runs."""

import datetime as dt

import pytest

from crons.models import Cron
from crons.services import cron_create
from tests.integration.test_admin import (
    ADD,
    act,
    add_data,
    agent,  # noqa: F401 - a fixture
    change_data,
    change_url,
    form_errors,
    text,
)
from threads.services import thread_create

pytestmark = pytest.mark.django_db

LATER = dt.datetime(2031, 6, 1, 8, 0, tzinfo=dt.UTC)


def test_add_a_stateless_cron_with_every_policy_field(admin_client, agent):  # noqa: F811
    response = admin_client.post(
        ADD,
        add_data(
            agent,
            overlap_policy="buffer_one",
            start_time_0="2031-06-01",
            start_time_1="08:00:00",
            max_runs="5",
        ),
    )
    assert response.status_code == 302, form_errors(response)
    cron = Cron.objects.get()
    assert (cron.overlap_policy, cron.start_time) == ("buffer_one", LATER)
    assert (cron.max_runs, cron.remaining_runs, cron.paused_reason) == (5, 5, None)
    assert cron.next_run_date >= LATER
    page = text(admin_client.get(change_url(cron)))
    assert "Scheduler control" in page, page
    assert "Buffer One" in page
    # The next fire times shown start at start_time.
    assert "2031-06-02 07:30:00 UTC" in page and "2031-05" not in page


def test_a_thread_cron_refuses_an_overlap_policy(admin_client, agent):  # noqa: F811
    thread = thread_create()
    response = admin_client.post(ADD, add_data(agent, thread=str(thread.pk), overlap_policy="skip"))
    assert response.status_code == 200
    assert "multitask_strategy" in " ".join(form_errors(response)["overlap_policy"])
    assert not Cron.objects.exists()
    ok = admin_client.post(ADD, add_data(agent, thread=str(thread.pk)))
    assert ok.status_code == 302, form_errors(ok)
    assert Cron.objects.get().overlap_policy == "allow_all"


def test_reenabling_with_no_run_left_needs_a_new_max_runs(admin_client, agent):  # noqa: F811
    cron = cron_create(assistant=agent, schedule="0 * * * *", max_runs=2)
    Cron.objects.filter(pk=cron.pk).update(
        remaining_runs=0, enabled=False, paused_reason="max_runs reached: 2 scheduled run(s) fired"
    )
    cron.refresh_from_db()
    page = text(admin_client.get(change_url(cron)))
    assert "max_runs reached: 2 scheduled run(s) fired" in page
    refused = admin_client.post(change_url(cron), change_data(cron, enabled="on", max_runs="2"))
    assert "max_runs" in form_errors(refused)
    assert Cron.objects.get(pk=cron.pk).enabled is False
    # The list's action says why it left the cron alone.
    listed = text(act(admin_client, "enable_crons", [cron]))
    assert "fired all its max_runs" in listed
    assert Cron.objects.get(pk=cron.pk).enabled is False
    # A new max_runs enables it, with a new count.
    saved = admin_client.post(change_url(cron), change_data(cron, enabled="on", max_runs="3"))
    assert saved.status_code == 302, form_errors(saved)
    cron.refresh_from_db()
    assert (cron.enabled, cron.max_runs, cron.remaining_runs, cron.paused_reason) == (
        True,
        3,
        3,
        None,
    )
    # Saving other changes leaves the count alone.
    Cron.objects.filter(pk=cron.pk).update(remaining_runs=1)
    cron.refresh_from_db()
    assert (
        admin_client.post(
            change_url(cron), change_data(cron, schedule="15 * * * *", max_runs="3")
        ).status_code
        == 302
    )
    assert Cron.objects.get(pk=cron.pk).remaining_runs == 1


def test_catchup_and_jitter_are_edited_in_the_admin(admin_client, agent):  # noqa: F811
    response = admin_client.post(
        ADD, add_data(agent, catchup_window="1800", catchup="all", jitter="120")
    )
    assert response.status_code == 302, form_errors(response)
    cron = Cron.objects.get()
    assert (cron.catchup_window, cron.catchup, cron.jitter) == (1800, "all", 120)
    page = text(admin_client.get(change_url(cron)))
    assert "Catchup window" in page and "Jitter" in page
    # Changed through the form (cron_update); empty clears, blank catchup is the default.
    saved = admin_client.post(
        change_url(cron), change_data(cron, catchup_window="", catchup="", jitter="30")
    )
    assert saved.status_code == 302, form_errors(saved)
    cron.refresh_from_db()
    assert (cron.catchup_window, cron.catchup, cron.jitter) == (None, "latest", 30)
    # Negative values are refused, and nothing is written.
    refused = admin_client.post(change_url(cron), change_data(cron, jitter="-1"))
    assert "jitter" in form_errors(refused)
    refused = admin_client.post(change_url(cron), change_data(cron, catchup_window="-5"))
    assert "catchup_window" in form_errors(refused)
    refused = admin_client.post(change_url(cron), change_data(cron, catchup="sometimes"))
    assert "catchup" in form_errors(refused)
    cron.refresh_from_db()
    assert (cron.catchup_window, cron.catchup, cron.jitter) == (None, "latest", 30)
