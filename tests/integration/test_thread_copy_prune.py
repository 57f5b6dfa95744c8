"""threads.copy and threads.prune through the official SDK: a copy has the
source's state and its whole history; prune deletes threads or keeps only
their latest checkpoint."""

import uuid

import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from runs.services import run_create
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)


def _said(text: str, n: int) -> dict:
    return {"messages": [{"type": "human", "content": text, "id": f"m{n}"}]}


def _thread_with_history(sdk, states: int = 3) -> str:
    thread_id = sdk.threads.create(graph_id="agent", metadata={"owner": "ada"})["thread_id"]
    for n in range(states):
        sdk.threads.update_state(thread_id, _said(f"hi {n}", n), as_node="agent")
    return thread_id


def test_copy_has_the_state_and_the_history(sdk):
    source = _thread_with_history(sdk)
    copy = sdk.threads.copy(source)

    assert copy["thread_id"] != source
    assert copy["metadata"] == sdk.threads.get(source)["metadata"]
    assert copy["metadata"]["owner"] == "ada"
    original_state = sdk.threads.get_state(source)
    copied_state = sdk.threads.get_state(copy["thread_id"])
    assert copied_state["values"] == original_state["values"]
    assert (
        copied_state["checkpoint"]["checkpoint_id"] == original_state["checkpoint"]["checkpoint_id"]
    )
    assert copied_state["checkpoint"]["thread_id"] == copy["thread_id"]
    history = sdk.threads.get_history(copy["thread_id"], limit=10)
    assert len(history) == len(sdk.threads.get_history(source, limit=10)) == 3

    # The copy goes its own way.
    sdk.threads.update_state(copy["thread_id"], _said("only here", 9), as_node="agent")
    assert len(sdk.threads.get_state(source)["values"]["messages"]) == 3
    assert len(sdk.threads.get_state(copy["thread_id"])["values"]["messages"]) == 4


@pytest.mark.usefixtures("parked_runs")
def test_copy_of_an_unknown_thread_is_404_and_a_busy_one_409(sdk):
    with pytest.raises(NotFoundError):
        sdk.threads.copy(str(uuid.uuid4()))
    busy = Thread.objects.create()
    run_create(thread=busy, assistant=assistant_get_or_404("agent"), kwargs={"input": None})
    before = Thread.objects.count()
    with pytest.raises(ConflictError, match="in-flight runs"):
        sdk.threads.copy(str(busy.thread_id))
    assert Thread.objects.count() == before


def test_prune_keep_latest_keeps_the_state_and_one_checkpoint(sdk):
    kept = _thread_with_history(sdk)
    untouched = _thread_with_history(sdk, states=2)
    before = sdk.threads.get_state(kept)

    result = sdk.threads.prune([kept, str(uuid.uuid4())], strategy="keep_latest")

    assert result == {"pruned_count": 1}
    assert sdk.threads.get_state(kept)["values"] == before["values"]
    assert len(sdk.threads.get_history(kept, limit=10)) == 1
    assert len(sdk.threads.get_history(untouched, limit=10)) == 2


@pytest.mark.usefixtures("parked_runs")
def test_prune_delete_removes_threads_with_their_runs(sdk):
    doomed = _thread_with_history(sdk, states=1)
    other = _thread_with_history(sdk, states=1)
    run_create(
        thread=Thread.objects.get(pk=doomed),
        assistant=assistant_get_or_404("agent"),
        kwargs={"input": None},
    )
    assert sdk.threads.prune([doomed]) == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        sdk.threads.get(doomed)
    assert not Run.objects.filter(thread_id=doomed).exists()
    assert sdk.threads.get(other)["thread_id"] == other


def test_prune_with_bad_input_is_422(sdk):
    with pytest.raises(UnprocessableEntityError):
        sdk.threads.prune(["not-a-uuid"])
    with pytest.raises(UnprocessableEntityError):
        sdk.threads.prune([str(uuid.uuid4())], strategy="everything")
