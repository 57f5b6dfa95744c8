"""Joining a thread's stream (threads.join_stream) through the official SDK:
the events of the runs on the thread, executed by the session's real worker."""

import threading

import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from cronsvc.services import assistants_ensure_defaults
from runs.models import Run, RunEvent, ThreadStream
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


@pytest.fixture(autouse=True)
def system_assistant(settings):
    assistants_ensure_defaults()
    # Keep-alives often: a closed stream is noticed (and unregistered) quickly.
    settings.CRONSVC_STREAM_HEARTBEAT = 0.1


class Joined:
    """A thread stream read in the background until `ends` runs ended."""

    def __init__(self, sdk, thread_id, *, ends: int, **kwargs):
        self.parts: list = []
        self.error: BaseException | None = None
        before = ThreadStream.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.thread = threading.Thread(
            target=self._read, args=(sdk, thread_id, ends, kwargs), daemon=True
        )
        self.thread.start()
        # Open (registered) before the test starts runs (or, replaying, done already).
        wait_until(
            lambda: (
                not self.thread.is_alive()
                or ThreadStream.objects.filter(thread_id=thread_id, id__gt=before).exists()
            ),
            timeout=10,
        )

    def _read(self, sdk, thread_id, ends, kwargs):
        try:
            for part in sdk.threads.join_stream(thread_id, **kwargs):
                self.parts.append(part)
                if sum(p.event == "end" for p in self.parts) >= ends:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by result()
            self.error = exc

    def result(self, timeout: float = 60) -> list:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"stream still open: {self.parts}"
        if self.error:
            raise self.error
        return self.parts


def test_join_stream_sends_the_events_of_each_run_started_on_the_thread(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    joined = Joined(sdk, thread_id, ends=2)

    first = sdk.runs.create(thread_id, "agent", input=QUESTION)
    sdk.runs.join(thread_id, first["run_id"])
    second = sdk.runs.create(thread_id, "agent", input={"messages": []})
    parts = joined.result()

    names = [
        (p.event, p.data.get("run_id") if p.event in ("metadata", "end") else None) for p in parts
    ]
    assert names == [
        ("metadata", first["run_id"]),
        ("values", None),
        ("values", None),
        ("end", first["run_id"]),
        ("metadata", second["run_id"]),
        ("values", None),
        ("values", None),
        ("end", second["run_id"]),
    ]
    assert parts[3].data == {"run_id": first["run_id"], "status": "success"}
    final = sdk.threads.get(thread_id)["values"]
    assert parts[6].data == final
    assert [m["type"] for m in parts[2].data["messages"]] == ["human", "ai"]
    ids = [int(p.id) for p in parts if p.event == "values"]
    assert ids == sorted(ids)
    assert ids == list(
        RunEvent.objects.filter(run__thread_id=thread_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    # The client went away: its registration is gone.
    wait_until(lambda: not ThreadStream.objects.filter(thread_id=thread_id).exists(), timeout=10)


def test_last_event_id_resumes_without_loss_and_lifecycle_sends_only_starts_and_ends(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    joined = Joined(sdk, thread_id, ends=1)
    run = sdk.runs.create(thread_id, "agent", input=QUESTION)
    parts = joined.result()
    values = [p for p in parts if p.event == "values"]
    assert len(values) == 2

    resumed = Joined(sdk, thread_id, ends=1, last_event_id=values[0].id)
    lifecycle = Joined(sdk, thread_id, ends=1, last_event_id="-1", stream_mode="lifecycle")

    assert [p.event for p in resumed.result()] == ["metadata", "values", "end"]
    assert resumed.parts[1].id == values[1].id
    assert resumed.parts[1].data == values[1].data
    assert [(p.event, p.data) for p in lifecycle.result()] == [
        ("metadata", {"run_id": run["run_id"], "attempt": 1}),
        ("end", {"run_id": run["run_id"], "status": "success"}),
    ]


def test_a_run_asking_for_events_sends_them_on_the_thread_stream(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]
    joined = Joined(sdk, thread_id, ends=1)
    states = Joined(sdk, thread_id, ends=1, stream_mode=["lifecycle", "state_update"])

    run = sdk.runs.create(thread_id, "agent", input=QUESTION, stream_mode=["updates", "events"])
    parts = joined.result()

    names = [(p.event, p.data.get("event") if p.event == "events" else None) for p in parts]
    assert names == [
        ("metadata", None),
        ("events", "on_chain_start"),
        ("events", "on_chain_start"),
        ("events", "on_chain_end"),
        ("updates", None),
        ("events", "on_chain_end"),
        ("end", None),
    ]
    assert parts[1].data["run_id"] == run["run_id"] and parts[1].data["parent_ids"] == []
    assert parts[2].data["name"] == "agent" and parts[2].data["parent_ids"] == [run["run_id"]]
    assert [p.event for p in states.result()] == ["metadata", "end"]


def test_a_run_on_a_thread_nobody_streams_records_no_events(sdk, worker):
    thread_id = sdk.threads.create()["thread_id"]

    run = sdk.runs.create(thread_id, "agent", input=QUESTION)
    sdk.runs.join(thread_id, run["run_id"])

    assert not RunEvent.objects.filter(run_id=run["run_id"]).exists()
    assert Run.objects.get(pk=run["run_id"]).streamed is False


def test_join_stream_errors(sdk, live_server):
    thread_id = sdk.threads.create()["thread_id"]

    with pytest.raises(NotFoundError):
        list(sdk.threads.join_stream("00000000-0000-0000-0000-000000000000"))
    with pytest.raises(UnprocessableEntityError):
        list(sdk.threads.join_stream("not-a-uuid"))
    with pytest.raises(UnprocessableEntityError) as bad_mode:
        list(sdk.threads.join_stream(thread_id, stream_mode="values"))

    assert "Invalid stream_mode 'values'" in bad_mode.value.response.json()["detail"]
    assert not ThreadStream.objects.exists()
