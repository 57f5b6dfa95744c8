"""runs.create_batch and runs.cancel_many through the official SDK."""

import uuid

import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from runs.models import Run
from threads.models import Thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("parked_runs")]


def test_a_batch_starts_one_stateless_run_per_payload(sdk):
    runs = sdk.runs.create_batch(
        [
            {"assistant_id": "agent", "input": {"messages": []}, "metadata": {"n": 1}},
            {"assistant_id": "agent", "input": {"messages": []}, "metadata": {"n": 2}},
        ]
    )
    assert [r["metadata"]["n"] for r in runs] == [1, 2]
    assert len({r["thread_id"] for r in runs}) == 2
    assert Run.objects.filter(run_id__in=[r["run_id"] for r in runs]).count() == 2


def test_a_batch_with_one_bad_payload_writes_nothing(sdk):
    runs, threads = Run.objects.count(), Thread.objects.count()
    with pytest.raises(UnprocessableEntityError):  # the server's answer to an unknown graph
        sdk.runs.create_batch(
            [{"assistant_id": "agent", "input": {}}, {"assistant_id": "nope", "input": {}}]
        )
    with pytest.raises(NotFoundError):
        sdk.runs.create_batch(
            [{"assistant_id": "agent", "input": {}}, {"assistant_id": str(uuid.uuid4())}]
        )
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.create_batch([{"assistant_id": "agent", "input": {}}, {"input": {}}])
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.create_batch([])
    assert (Run.objects.count(), Thread.objects.count()) == (runs, threads)


def _pending_runs(sdk, thread_id: str, n: int) -> list[str]:
    # Parked (parked_runs): runs stay pending until cancelled.
    return [
        sdk.runs.create(thread_id, "agent", input={"messages": []}, multitask_strategy="enqueue")[
            "run_id"
        ]
        for _ in range(n)
    ]


def test_cancel_many_by_thread_and_ids(sdk):
    thread_id = sdk.threads.create()["thread_id"]
    first, second, third = _pending_runs(sdk, thread_id, 3)

    sdk.runs.cancel_many(thread_id=thread_id, run_ids=[first, second])

    statuses = dict(Run.objects.filter(thread_id=thread_id).values_list("run_id", "status"))
    assert statuses[uuid.UUID(first)] == statuses[uuid.UUID(second)] == "interrupted"
    assert statuses[uuid.UUID(third)] == "pending"
    with pytest.raises(NotFoundError):
        sdk.runs.cancel_many(thread_id=thread_id, run_ids=[first])  # finished already


def test_cancel_many_by_status(sdk):
    one = sdk.threads.create()["thread_id"]
    two = sdk.threads.create()["thread_id"]
    ids = _pending_runs(sdk, one, 2) + _pending_runs(sdk, two, 1)

    sdk.runs.cancel_many(status="pending")

    assert set(Run.objects.filter(run_id__in=ids).values_list("status", flat=True)) == {
        "interrupted"
    }


def test_cancel_many_needs_one_way_of_choosing(sdk):
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.cancel_many()
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.cancel_many(thread_id=str(uuid.uuid4()), run_ids=[], status="all")
    with pytest.raises(UnprocessableEntityError):
        sdk.runs.cancel_many(status="finished")  # type: ignore[arg-type]
