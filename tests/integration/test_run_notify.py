"""PostgreSQL NOTIFY for runs (runs/migrations/0005 and 0010, runs.waiters):
a run's status change, its recorded events and its deletion are heard on
`cronsvc_runs` with the run id, by any listener; and the API process's
listener hands them to the poller that wakes the waiters at once."""

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

        other = make_run(run.thread)
        Run.objects.filter(pk__in=[run.pk, other.pk]).delete()
        assert {n.payload for n in listen.notifies(timeout=2, stop_after=2)} == {
            str(run.pk),
            str(other.pk),
        }


def _woken_within(run_pks: list, change, within: float) -> list[bool]:
    """For each run in turn: watch it, apply `change` to it, and whether its
    watch was woken within `within` s. The poll sees every run pending
    whatever happens: only a NOTIFY can wake a watch."""

    async def scenario():
        poller = waiters.poller()
        woken = []
        for pk in run_pks:
            with poller.watch(pk) as watch:
                await watch.wait(5)  # the poller's first look at the run
                assert await asyncio.to_thread(waiters.listener.connected.wait, 15)
                await asyncio.to_thread(change, pk)
                woken.append(await watch.wait(within))
        return woken

    return asyncio.run(scenario())


@pytest.fixture
def listening(settings, monkeypatch):
    settings.CRONSVC_RUN_LISTENER = True
    monkeypatch.setattr(waiters, "_states", lambda run_ids: dict.fromkeys(run_ids, ("pending", 0)))


@pytest.mark.usefixtures("listening")
def test_the_listener_wakes_a_waiter_at_once_without_the_poll():
    runs = [make_run(make_thread()).pk for _ in range(3)]

    # Three in a row, each within 0.25 s: the listener used to gather what it
    # heard for a whole second before handing it over (woken 0-1 s late).
    def finish(pk):
        Run.objects.filter(pk=pk).update(status="success")

    assert _woken_within(runs, finish, 0.25) == [True, True, True]


@pytest.mark.usefixtures("listening")
def test_a_deleted_run_wakes_its_waiter_without_the_poll():
    runs = [make_run(make_thread()).pk for _ in range(2)]

    def delete(pk):
        Run.objects.filter(pk=pk).delete()

    # Under the poll's pause while listening (2 s).
    assert _woken_within(runs, delete, 0.5) == [True, True]
