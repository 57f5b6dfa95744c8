"""A background run executes the example graph on a real Celery worker (Redis)."""

import pytest

from runs.models import Run
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def test_background_run_executes_on_worker(sdk, worker):
    thread = sdk.threads.create()
    run = sdk.runs.create(thread["thread_id"], "agent", input=QUESTION)
    assert run["status"] == "pending"

    values = sdk.runs.join(thread["thread_id"], run["run_id"])

    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    assert values["messages"][1]["content"].startswith("It is ")
    state = sdk.threads.get_state(thread["thread_id"])
    assert state["values"] == values
    assert state["next"] == []
    assert sdk.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"
    assert Run.objects.get(pk=run["run_id"]).attempts == 1
    assert sdk.threads.get(thread["thread_id"])["status"] == "idle"


def test_thread_state_accumulates_over_runs(sdk, worker):
    thread = sdk.threads.create()
    for _ in range(2):
        run = sdk.runs.create(thread["thread_id"], "agent", input=QUESTION)
        sdk.runs.join(thread["thread_id"], run["run_id"])
    state = sdk.threads.get_state(thread["thread_id"])
    assert len(state["values"]["messages"]) == 4
    history = sdk.threads.get_history(thread["thread_id"], limit=10)
    assert len(history) >= 4
    runs = sdk.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success", "success"]


def test_wait_on_stateless_run_deletes_its_thread(sdk, worker):
    result = sdk.runs.wait(None, "agent", input=QUESTION)
    assert result["messages"][-1]["content"].startswith("It is ")
    wait_until(lambda: sdk.threads.search() == [], timeout=15)


def test_a_run_after_seconds_starts_once_its_delay_has_passed(sdk, worker):
    thread = sdk.threads.create()
    run = sdk.runs.create(thread["thread_id"], "agent", input=QUESTION, after_seconds=2)

    values = sdk.runs.join(thread["thread_id"], run["run_id"])

    assert values["messages"][-1]["content"].startswith("It is ")
    row = Run.objects.get(pk=run["run_id"])
    assert row.status == "success"
    assert (row.not_before - row.created_at).total_seconds() >= 1.9
    assert row.started_at >= row.not_before
