"""PostgreSQL NOTIFY for runs (runs/migrations/0005, runs.waiters): a run's
status change and its recorded events are heard on `cronsvc_runs` with the
run id, by any listener; and the API process's listener hands them to the
poller that wakes the waiters."""

import asyncio

import psycopg
import pytest
from django.db import connection

from runs import waiters
from runs.models import Run, RunEvent
from tests.factories import make_run, make_thread

# Parked: the session's worker must not run (and so notify about) these runs.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("parked_runs")]


def heard(listen: psycopg.Connection) -> set[str]:
    return {n.payload for n in listen.notifies(timeout=2, stop_after=1)}


def test_status_changes_and_events_notify_the_run_id():
    run = make_run(make_thread())
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as listen:
        listen.execute(f"LISTEN {waiters.CHANNEL}")

        Run.objects.filter(pk=run.pk).update(status="running")
        assert heard(listen) == {str(run.pk)}

        RunEvent.objects.bulk_create(
            [RunEvent(run=run, event="values", data={"n": n}) for n in range(3)]
        )
        assert heard(listen) == {str(run.pk)}  # one per statement and run

        Run.objects.filter(pk=run.pk).update(error="")  # not the status: nothing
        assert heard(listen) == set()


def test_the_listener_wakes_a_waiter_without_the_poll(settings, monkeypatch):
    settings.CRONSVC_RUN_LISTENER = True
    run = make_run(make_thread())
    # The poll sees the run pending whatever happens: only a NOTIFY can wake the waiter.
    monkeypatch.setattr(waiters, "_states", lambda run_ids: dict.fromkeys(run_ids, ("pending", 0)))

    async def scenario():
        poller = waiters.poller()
        with poller.watch(run.pk) as watch:
            await watch.wait(5)  # the poller's first look at the run
            assert await asyncio.to_thread(waiters.listener.connected.wait, 15)
            await asyncio.to_thread(lambda: Run.objects.filter(pk=run.pk).update(status="success"))
            return await watch.wait(1.5)  # under the poll's pause while listening (2 s)

    assert asyncio.run(scenario()) is True
