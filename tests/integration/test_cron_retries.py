"""Failure policies of crons (issue 15): `retry_policy` attempts a failed
cron-fired run again (the same run, on its thread, from its last checkpoint)
after its backoff; `max_consecutive_failures` pauses a cron whose runs keep
failing.

Driven like tests/integration/test_scheduler_policies.py: the real tick
(crons.ticking.fire_due) and runs claimed and finished through runs.lifecycle
as a worker would, with a settable clock (`now`) for the claims and the
backoff; the session's worker never sees these runs (parked_runs). The
retry from the checkpoint runs the real executor in process."""

import datetime as dt
import json
import threading

import httpx
import pytest
from django.db import connection
from django.utils import timezone as djtz
from django_celery_beat.models import PeriodicTask

from crons import dispatch, ticking
from crons.models import Cron, Tick
from crons.retry import retry_backoff, retry_policy_of
from crons.selectors import cron_ticks, tick_runs
from crons.services import cron_create, cron_update
from cronsvc.dbclock import db_now
from cronsvc.selectors import assistant_get_or_404
from runs import executor, lifecycle
from runs.leases import runs_reap
from runs.models import Run
from runs.services import run_create
from store.backend import get_store
from tests.factories import make_cron, z
from tests.integration.test_admin import (
    ADD,
    add_data,
    change_data,
    change_url,
    form_errors,
    text,
)
from threads.models import Thread
from threads.services import thread_create

START = z("2026-05-01T00:00:00Z")
POLICY = {"max_attempts": 4, "initial_interval": 10, "backoff_coefficient": 3, "max_interval": 60}
FAILURE_FIELDS = (
    "retry_policy",
    "max_consecutive_failures",
    "consecutive_failures",
    "last_run_date",
    "last_run_status",
)


def at(minute: int, second: int = 0) -> dt.datetime:
    return START + dt.timedelta(minutes=minute, seconds=second)


def tick(now: dt.datetime) -> None:
    ticking.fire_due(now=now)
    ticking.advance()


def run_of(cron: Cron, minute: int) -> Run:
    return Run.objects.get(cron=cron, scheduled_at=at(minute))


def start(run: Run, now: dt.datetime) -> Run:
    """A worker claims `run` at `now` (pending → running)."""
    claimed = lifecycle.run_claim_next(thread_id=run.thread_id, now=now)
    assert claimed is not None and claimed.pk == run.pk
    return claimed


def end(run: Run, status: str, now: dt.datetime, **kwargs) -> Run:
    error = None if status == "success" else f"attempt {run.attempts} {status}"
    assert lifecycle.run_finish(
        run_id=run.pk, status=status, attempt=run.attempts, error=error, now=now, **kwargs
    )
    run.refresh_from_db()
    return run


def nothing_claimable(thread_id, now: dt.datetime) -> bool:
    return (
        lifecycle.run_claim_next(thread_id=thread_id, now=now) is None
        and lifecycle.run_claim_ready(now=now) is None
    )


def tick_attempts(cron: Cron) -> list:
    """(run_status, attempts) of the cron's ticks, oldest first, as GET .../ticks answers."""
    ticks = list(cron_ticks(cron))[::-1]
    runs = tick_runs(ticks)
    return [runs.get(t.run_id, (None, None)) for t in ticks]


# --- retries, driven by the lifecycle ----------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_a_failed_run_waits_its_backoff_then_is_attempted_again_until_max_attempts():
    cron = make_cron(
        start=START,
        retry_policy=POLICY,
        payload={"input": {}, "webhook": "https://hooks.example.com/cron"},
    )
    assert dispatch.batchable(cron)  # a retry_policy alone keeps the batch path
    tick(at(1))
    run = run_of(cron, 1)
    thread_id = run.thread_id

    # Attempt 1 fails at 00:01:05: back to pending until 00:01:15 (10 s).
    run = end(start(run, at(1)), "error", at(1, 5))
    assert (run.status, run.attempts, run.failure_attempts) == ("pending", 1, 1)
    assert run.not_before == at(1, 15)
    assert run.error == "attempt 1 error"
    # Not final: no webhook yet, the thread stays busy, and its cron has no last run.
    assert run.webhook_status is None and run.finished_at is None
    assert Thread.objects.get(pk=thread_id).status == "busy"
    cron.refresh_from_db()
    assert (cron.last_run_final_status, cron.consecutive_failures) == (None, 0)
    assert tick_attempts(cron) == [("pending", 1)]
    # A stateless run's thread is not deleted while it waits.
    lifecycle.thread_delete_when_idle(thread_id=thread_id)
    assert Thread.objects.filter(pk=thread_id).exists()

    # The claim refuses it a second before its backoff ends and takes it then.
    assert nothing_claimable(thread_id, at(1, 14))
    run = start(run, at(1, 15))
    assert (run.attempts, run.failure_attempts) == (2, 1)
    # Attempt 2 times out: 10 * 3 = 30 s.
    run = end(run, "timeout", at(1, 20))
    assert (run.status, run.not_before) == ("pending", at(1, 50))
    assert nothing_claimable(thread_id, at(1, 49))
    # Attempt 3 fails: 10 * 3^2 = 90 s, capped at max_interval 60 s.
    run = end(start(run, at(1, 50)), "error", at(2))
    assert (run.status, run.not_before) == ("pending", at(3))
    assert nothing_claimable(thread_id, at(2, 59))
    assert tick_attempts(cron) == [("pending", 3)]
    # Attempt 4 fails too: max_attempts spent, the run ends in error.
    run = end(start(run, at(3)), "error", at(3, 1))
    assert (run.status, run.attempts, run.failure_attempts) == ("error", 4, 4)
    assert run.error == "attempt 4 error"
    assert run.webhook_status == "pending"  # delivered once, for the final attempt
    assert Thread.objects.get(pk=thread_id).status == "error"
    assert tick_attempts(cron) == [("error", 4)]
    cron.refresh_from_db()
    assert (cron.last_run_final_status, cron.last_run_date, cron.consecutive_failures) == (
        "error",
        at(3, 1),
        1,
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_without_a_retry_policy_a_failed_run_ends_at_once():
    cron = make_cron(start=START)
    assert cron.retry_policy is None
    tick(at(1))
    run = end(start(run_of(cron, 1), at(1)), "error", at(1, 5))
    assert (run.status, run.attempts, run.failure_attempts, run.not_before) == (
        "error",
        1,
        1,
        None,
    )
    # Neither an interrupted nor a successful run is retried.
    retried = make_cron(start=START, retry_policy={"max_attempts": 5})
    tick(at(2))
    run = end(start(run_of(retried, 2), at(2)), "interrupted", at(2, 5))
    assert (run.status, run.attempts) == ("interrupted", 1)


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_the_threads_next_run_waits_behind_a_run_in_backoff():
    thread = thread_create()
    cron = make_cron(
        start=START, thread=thread, retry_policy={"max_attempts": 2, "initial_interval": 120}
    )
    tick(at(1))
    first = end(start(run_of(cron, 1), at(1)), "error", at(1, 5))
    assert (first.status, first.not_before) == ("pending", at(3, 5))
    # The next tick's run and a run from the API queue behind it (enqueue).
    tick(at(2))
    from_tick = run_of(cron, 2)
    from_api = run_create(thread=thread, assistant=cron.assistant, kwargs={"input": {}})
    assert from_tick.status == from_api.status == "pending"
    # Before the backoff ends nothing on the thread starts, though they are due.
    assert nothing_claimable(thread.thread_id, at(2, 30))
    assert nothing_claimable(thread.thread_id, at(3, 4))
    # Then the run in backoff goes first, and the later ones only after it ends.
    again = start(first, at(3, 5))
    assert nothing_claimable(thread.thread_id, at(3, 6))
    end(again, "success", at(3, 10))
    assert start(from_tick, at(3, 11)).pk == from_tick.pk
    end(Run.objects.get(pk=from_tick.pk), "success", at(3, 12))
    assert start(from_api, at(3, 13)).pk == from_api.pk
    assert tick_attempts(cron) == [("success", 2), ("success", 1)]


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_failure_retries_and_worker_loss_retries_have_budgets_of_their_own(settings):
    settings.CRONSVC_RUN_MAX_ATTEMPTS = 2
    cron = make_cron(start=START, retry_policy={"max_attempts": 2, "initial_interval": 1})
    tick(at(1))
    run = end(start(run_of(cron, 1), at(1)), "error", at(1, 1))  # failure 1 of 2
    assert run.status == "pending"
    run = start(run, at(1, 2))  # attempt 2; its worker is lost
    Run.objects.filter(pk=run.pk).update(lease_expires_at=djtz.now() - dt.timedelta(seconds=1))
    # Worker-loss attempt 1 of 2 (the failed attempt is not one): requeued.
    assert runs_reap() == {"requeued": 1, "errored": 0}
    run.refresh_from_db()
    assert (run.status, run.attempts, run.failure_attempts) == ("pending", 2, 1)
    run = end(start(run, at(1, 3)), "error", at(1, 4))  # attempt 3: failure 2 of 2
    assert (run.status, run.attempts, run.failure_attempts) == ("error", 3, 2)

    # The other way round: failures do not spend the worker-loss budget.
    tick(at(2))
    run = end(start(run_of(cron, 2), at(2)), "timeout", at(2, 1))  # failure 1 of 2
    run = start(run, at(2, 2))
    Run.objects.filter(pk=run.pk).update(lease_expires_at=djtz.now() - dt.timedelta(seconds=1))
    assert runs_reap() == {"requeued": 1, "errored": 0}
    run = start(run, at(2, 3))  # attempt 3, worker-loss attempt 2 of 2: lost again
    Run.objects.filter(pk=run.pk).update(lease_expires_at=djtz.now() - dt.timedelta(seconds=1))
    assert runs_reap() == {"requeued": 0, "errored": 1}
    run.refresh_from_db()
    assert (run.status, run.attempts, run.failure_attempts) == ("error", 3, 1)
    assert run.error == (
        "Run's worker was lost (lease expired) on attempt 2 of 2 (CRONSVC_RUN_MAX_ATTEMPTS)"
    )


# --- retries with the real executor --------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("parked_runs")
def test_a_graph_failing_once_ends_in_success_on_attempt_two_from_its_checkpoint():
    flaky = assistant_get_or_404("flaky")
    cron = cron_create(
        assistant=flaky,
        schedule="* * * * *",
        payload={"input": {"messages": [], "fail_times": 1}},
        on_run_completed="keep",
        retry_policy={"max_attempts": 3, "initial_interval": 30},
        now=START,
    )
    tick(at(1))
    run = run_of(cron, 1)
    first = lifecycle.run_claim_next(thread_id=run.thread_id)
    before = db_now()
    assert executor.execute(first) == "error"
    after = db_now()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.failure_attempts) == ("pending", 1, 1)
    assert run.error == "RuntimeError: flaky: attempt 1 of act fails"
    # The backoff (30 s) on the database's clock, from the failure.
    backoff = dt.timedelta(seconds=30)
    assert before + backoff <= run.not_before <= after + backoff
    # The claim refuses it a second before and takes it at not_before.
    assert nothing_claimable(run.thread_id, run.not_before - dt.timedelta(seconds=1))
    second = lifecycle.run_claim_ready(now=run.not_before)
    assert second is not None and second.pk == run.pk and second.attempts == 2
    assert executor.execute(second) == "success"
    run.refresh_from_db()
    assert (run.status, run.attempts, run.failure_attempts, run.error) == ("success", 2, 1, None)
    assert [m["content"] for m in run.output["messages"]] == [
        "Prepared (call 1).",
        "Done on attempt 2 of act.",
    ]
    # Attempt 2 continued from the checkpoint after `prepare`: it ran once.
    calls = {
        node: get_store().get(("flaky", str(run.thread_id)), node).value["calls"]
        for node in ("prepare", "act")
    }
    assert calls == {"prepare": 1, "act": 2}
    assert tick_attempts(cron) == [("success", 2)]
    cron.refresh_from_db()
    assert (cron.last_run_final_status, cron.consecutive_failures) == ("success", 0)


# --- join and wait -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("parked_runs")
def test_join_sees_only_the_final_attempts_result(sdk):
    thread = thread_create()
    cron = make_cron(start=START, thread=thread, retry_policy={"max_attempts": 2})
    tick(at(1))
    run = start(run_of(cron, 1), at(1))
    answers = []
    joining = threading.Thread(
        target=lambda: answers.append(sdk.runs.join(str(thread.thread_id), str(run.run_id)))
    )
    joining.start()
    run = end(run, "error", at(1, 5))
    assert run.status == "pending"
    joining.join(timeout=1.5)
    assert joining.is_alive() and not answers  # not the failed attempt's answer
    done = {"messages": [{"type": "ai", "content": "second time lucky"}]}
    end(start(run, at(1, 6)), "success", at(1, 7), output=done, values=done)
    joining.join(timeout=30)
    assert answers == [done]


# --- max_consecutive_failures --------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_max_consecutive_failures_pauses_the_cron_with_a_reason():
    cron = make_cron(start=START, max_consecutive_failures=2)
    assert not dispatch.batchable(cron)
    assert not Cron.objects.filter(dispatch.BATCHABLE, pk=cron.pk).exists()
    assert (cron.consecutive_failures, cron.last_run_date, cron.last_run_final_status) == (
        0,
        None,
        None,
    )

    def fire_and_end(minute: int, status: str) -> Cron:
        tick(at(minute))
        end(start(run_of(cron, minute), at(minute)), status, at(minute, 30))
        return Cron.objects.select_related("periodic_task").get(pk=cron.pk)

    state = fire_and_end(1, "error")
    assert (state.consecutive_failures, state.last_run_final_status, state.last_run_date) == (
        1,
        "error",
        at(1, 30),
    )
    # A success in between resets the count.
    assert fire_and_end(2, "success").consecutive_failures == 0
    # Interrupted is neither.
    assert fire_and_end(3, "error").consecutive_failures == 1
    assert fire_and_end(4, "interrupted").consecutive_failures == 1
    state = fire_and_end(5, "timeout")
    assert (state.consecutive_failures, state.enabled) == (2, False)
    last = run_of(cron, 5)
    assert state.paused_reason == (
        f"max_consecutive_failures reached: 2 run(s) in a row failed (the last, run "
        f"{last.run_id}: timeout)"
    )
    assert state.periodic_task.enabled is False  # the mirror follows
    # Paused: nothing more fires.
    tick(at(6))
    tick(at(7))
    assert not Tick.objects.filter(cron=cron, scheduled_at__gt=at(5)).exists()
    # Re-enabling clears the reason and the count.
    state = cron_update(cron=state, enabled=True, now=at(7, 30))
    assert (state.enabled, state.paused_reason, state.consecutive_failures) == (True, None, 0)
    assert Cron.objects.get(pk=cron.pk).consecutive_failures == 0
    tick(at(8))
    assert Tick.objects.get(cron=cron, scheduled_at=at(8)).status == "fired"


@pytest.mark.django_db
@pytest.mark.usefixtures("parked_runs")
def test_a_run_retried_to_success_is_not_a_consecutive_failure():
    cron = make_cron(start=START, max_consecutive_failures=1, retry_policy={"max_attempts": 2})
    tick(at(1))
    run = end(start(run_of(cron, 1), at(1)), "error", at(1, 1))
    assert run.status == "pending"
    cron.refresh_from_db()
    assert (cron.enabled, cron.consecutive_failures) == (True, 0)
    end(start(run, at(1, 3)), "success", at(1, 4))
    cron.refresh_from_db()
    assert (cron.enabled, cron.consecutive_failures, cron.last_run_final_status) == (
        True,
        0,
        "success",
    )
    # Its retries spent, the failure pauses it (n = 1).
    tick(at(2))
    run = end(start(run_of(cron, 2), at(2)), "error", at(2, 1))
    run = end(start(run, at(2, 3)), "error", at(2, 4))
    assert run.status == "error"
    cron.refresh_from_db()
    assert (cron.enabled, cron.consecutive_failures) == (False, 1)
    assert cron.paused_reason.startswith("max_consecutive_failures reached: 1 run(s)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("parked_runs")
def test_concurrent_failures_are_all_counted():
    cron = make_cron(start=START, overlap_policy="allow_all", max_consecutive_failures=100)
    runs = []
    for minute in range(1, 7):
        tick(at(minute))
        runs.append(start(run_of(cron, minute), at(minute)))
    barrier = threading.Barrier(len(runs))

    def fail(run: Run) -> None:
        try:
            barrier.wait()
            lifecycle.run_finish(run_id=run.pk, status="error", attempt=run.attempts)
        finally:
            connection.close()

    workers = [threading.Thread(target=fail, args=(run,)) for run in runs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert Cron.objects.get(pk=cron.pk).consecutive_failures == len(runs)


# --- the API -------------------------------------------------------------------


def refused(live_server, method: str, path: str, body: dict) -> str:
    response = httpx.request(method, f"{live_server.url}{path}", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else str(detail)


@pytest.mark.django_db(transaction=True)
def test_defaults_and_round_trip_through_create_get_search_and_patch(sdk):
    plain = sdk.crons.create("agent", schedule="*/5 * * * *")
    assert {k: plain[k] for k in FAILURE_FIELDS} == {
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
    assert Cron.objects.get(pk=plain["cron_id"]).retry_policy is None  # stored as today
    cron = sdk.http.post(
        "/runs/crons",
        json={
            "assistant_id": "agent",
            "schedule": "0 9 * * *",
            "input": {"messages": []},
            "retry_policy": {"max_attempts": 3, "initial_interval": 2.5},
            "max_consecutive_failures": 4,
        },
    )
    assert cron["retry_policy"] == {
        "max_attempts": 3,
        "initial_interval": 2.5,
        "backoff_coefficient": 2.0,
        "max_interval": 250.0,  # 100 x initial_interval unless given, as Temporal's
    }
    assert cron["max_consecutive_failures"] == 4
    assert not set(FAILURE_FIELDS) & set(cron["payload"])  # cron fields, not run options
    assert sdk.http.get(f"/runs/crons/{cron['cron_id']}") == cron
    assert cron in sdk.crons.search()
    assert sdk.crons.search(
        select=["cron_id", "retry_policy", "max_consecutive_failures", "consecutive_failures"],
        limit=100,
    ) == [
        {
            "cron_id": c["cron_id"],
            "retry_policy": c["retry_policy"],
            "max_consecutive_failures": c["max_consecutive_failures"],
            "consecutive_failures": 0,
        }
        for c in (cron, plain)
    ]
    thread = sdk.threads.create()
    on_thread = sdk.http.post(
        f"/threads/{thread['thread_id']}/runs/crons",
        json={"assistant_id": "agent", "schedule": "0 * * * *", "retry_policy": {}},
    )
    assert on_thread["retry_policy"]["max_attempts"] == 1
    patched = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}",
        json={
            "retry_policy": {"max_attempts": 5, "max_interval": 30},
            "max_consecutive_failures": None,
        },
    )
    assert patched["retry_policy"] == {
        "max_attempts": 5,
        "initial_interval": 1,
        "backoff_coefficient": 2.0,
        "max_interval": 30,
    }
    assert patched["max_consecutive_failures"] is None
    # Read-only fields sent back are ignored; absent fields are left alone.
    echoed = sdk.http.patch(
        f"/runs/crons/{cron['cron_id']}",
        json={"consecutive_failures": 7, "last_run_status": "error", "enabled": False},
    )
    assert (echoed["consecutive_failures"], echoed["last_run_status"]) == (0, None)
    assert echoed["retry_policy"] == patched["retry_policy"]
    assert not set(FAILURE_FIELDS) & set(echoed["payload"])
    cleared = sdk.http.patch(f"/runs/crons/{cron['cron_id']}", json={"retry_policy": None})
    assert cleared["retry_policy"]["max_attempts"] == 1


BAD = [
    ({"retry_policy": {"max_attempts": 0}}, "max_attempts"),
    ({"retry_policy": {"max_attempts": 2.5}}, "max_attempts"),
    ({"retry_policy": {"max_attempts": True}}, "max_attempts"),
    ({"retry_policy": {"initial_interval": 0}}, "initial_interval"),
    ({"retry_policy": {"initial_interval": "1s"}}, "initial_interval"),
    ({"retry_policy": {"max_interval": -5}}, "max_interval"),
    ({"retry_policy": {"backoff_coefficient": 0.5}}, "backoff_coefficient"),
    ({"retry_policy": {"maximum_attempts": 3}}, "unknown key"),
    ({"retry_policy": [3]}, "retry_policy"),
    ({"retry_policy": 3}, "retry_policy"),
    ({"max_consecutive_failures": 0}, "max_consecutive_failures"),
    ({"max_consecutive_failures": -2}, "max_consecutive_failures"),
    ({"max_consecutive_failures": "many"}, "max_consecutive_failures"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("body", "message"), BAD)
def test_invalid_values_are_422_and_write_nothing(sdk, live_server, body, message):
    before = (Cron.objects.count(), PeriodicTask.objects.count())
    assert message in refused(
        live_server,
        "POST",
        "/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", **body},
    )
    thread = sdk.threads.create()
    assert message in refused(
        live_server,
        "POST",
        f"/threads/{thread['thread_id']}/runs/crons",
        {"assistant_id": "agent", "schedule": "0 * * * *", **body},
    )
    assert (Cron.objects.count(), PeriodicTask.objects.count()) == before
    cron = sdk.crons.create("agent", schedule="0 * * * *")
    stored = Cron.objects.filter(pk=cron["cron_id"]).values().get()
    assert message in refused(live_server, "PATCH", f"/runs/crons/{cron['cron_id']}", body)
    assert Cron.objects.filter(pk=cron["cron_id"]).values().get() == stored


def test_backoff_is_capped_and_never_overflows():
    policy = retry_policy_of({"max_attempts": 1000, "backoff_coefficient": 1000})
    assert [retry_backoff(policy, n) for n in (1, 2, 3)] == [1, 100, 100]
    assert retry_backoff(policy, 999) == 100


# --- the admin -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_edits_the_failure_policies_through_the_services(admin_client):
    agent = assistant_get_or_404("agent")
    bad = admin_client.post(ADD, add_data(agent, retry_policy=json.dumps({"max_attempts": 0})))
    assert bad.status_code == 200
    assert "max_attempts" in " ".join(form_errors(bad)["retry_policy"])
    assert not Cron.objects.exists()
    response = admin_client.post(
        ADD,
        add_data(agent, retry_policy=json.dumps({"max_attempts": 3}), max_consecutive_failures="2"),
    )
    assert response.status_code == 302, form_errors(response)
    cron = Cron.objects.get()
    assert cron.retry_policy == {
        "max_attempts": 3,
        "initial_interval": 1,
        "backoff_coefficient": 2.0,
        "max_interval": 100,
    }
    assert cron.max_consecutive_failures == 2
    page = text(admin_client.get(change_url(cron)))
    assert "Consecutive failures" in page and "Max consecutive failures" in page
    # Emptied: no retry, never paused.
    changed = admin_client.post(
        change_url(cron), change_data(cron, retry_policy="", max_consecutive_failures="")
    )
    assert changed.status_code == 302, form_errors(changed)
    cron.refresh_from_db()
    assert (cron.retry_policy, cron.max_consecutive_failures) == (None, None)
