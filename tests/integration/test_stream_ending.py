"""What a stream holds is given back when its response goes, whether or not
its body ever started: a client that leaves while the run is being started,
or before the first event is sent, leaves no hold on a stateless run's
thread (its deletion would wait for the hold's 30 s expiry) and, with
on_disconnect="cancel", its run cancelled. runs.streaming.StreamSlot owns
them: each is registered on the stream's slot as it is taken, and given back
once when the slot is."""

import gc

import pytest

from runs import streaming
from runs.models import Run, ThreadStream
from tests.conftest import wait_until
from tests.factories import agent, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


def stateless_run() -> Run:
    # A running run no worker was told about (run_create would wake one).
    return Run.objects.create(
        thread=make_thread(),
        assistant=agent(),
        status=Run.Status.RUNNING,
        kwargs={"input": {}},
        on_completion="delete",
    )


def holds(run: Run) -> int:
    return ThreadStream.objects.filter(thread_id=run.thread_id).count()


def test_a_response_dropped_before_its_body_started_gives_the_hold_back_and_cancels():
    run = stateless_run()
    open_before = streaming.StreamSlot.open
    slot = streaming.StreamSlot.take()
    registration = streaming.hold_stateless_thread(run, slot)
    assert registration is not None and holds(run) == 1
    events = streaming.relay(
        run, after=0, cancel_on_disconnect=True, slot=slot, registration=registration
    )
    response = streaming.EventStreamResponse(slot, events)
    del response, events  # the client left before the body started: never iterated
    gc.collect()
    assert streaming.StreamSlot.open == open_before
    wait_until(lambda: holds(run) == 0, timeout=5)
    wait_until(lambda: Run.objects.filter(pk=run.pk, cancel_action="interrupt").exists(), timeout=5)


def test_a_hold_taken_after_the_client_left_is_given_back_at_once():
    # The view's start (run and hold, off the loop) went on after the request
    # was cancelled and its slot given back.
    run = stateless_run()
    slot = streaming.StreamSlot.take()
    slot.release()
    assert streaming.hold_stateless_thread(run, slot) is not None
    wait_until(lambda: holds(run) == 0, timeout=5)


def test_a_stream_that_reached_its_end_does_not_cancel_its_run():
    run = stateless_run()
    slot = streaming.StreamSlot.take()
    cancelled = []
    slot.on_disconnect(cancelled.append, "cancelled")
    slot.ended()
    slot.release()
    slot.release()  # once only
    assert cancelled == []
    other = streaming.StreamSlot.take()
    other.on_disconnect(cancelled.append, "cancelled")
    other.release()
    wait_until(lambda: cancelled == ["cancelled"], timeout=5)
    assert Run.objects.get(pk=run.pk).cancel_action is None


def test_a_thread_stream_dropped_before_its_body_started_unregisters():
    thread = make_thread()
    slot = streaming.StreamSlot.take()
    registration, _ = streaming.thread_stream_open(thread.pk, None, slot)
    assert ThreadStream.objects.filter(pk=registration).exists()
    response = streaming.EventStreamResponse(
        slot, streaming.thread_relay(thread.pk, registration, after=0, names=None, slot=slot)
    )
    response.close()  # as Django closes a response it could not send
    wait_until(lambda: not ThreadStream.objects.filter(pk=registration).exists(), timeout=5)


def test_a_streamed_stateless_run_its_thread_and_its_hold_commit_together(monkeypatch):
    from django.db.backends.base.base import BaseDatabaseWrapper

    from cronsvc.http.inputs import validated
    from runs.apis import RunCreateIn

    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)  # no worker
    body = {"assistant_id": "agent", "input": {}}
    run_input = {
        "thread_id": None,
        "data": validated(RunCreateIn, body),
        "body": body,
        "stream": True,
    }
    commits = []
    commit = BaseDatabaseWrapper.commit

    def counted(self):
        commits.append(self.alias)
        return commit(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "commit", counted)
    slot = streaming.StreamSlot.take()
    run, registration = streaming.run_start_streamed(run_input, slot, cancel_on_disconnect=False)
    assert commits == ["default"]
    assert ThreadStream.objects.filter(pk=registration, thread_id=run.thread_id).exists()
    slot.release()
    wait_until(lambda: holds(run) == 0, timeout=5)


def test_a_stream_start_that_outlived_its_client_gives_the_hold_back_and_cancels(monkeypatch):
    # The view's start (off the loop) went on after the request was cancelled
    # and its slot given back: registered once committed, given back at once.
    from cronsvc.http.inputs import validated
    from runs.apis import RunCreateIn

    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)  # no worker
    body = {"assistant_id": "agent", "input": {}}
    run_input = {"thread_id": None, "data": validated(RunCreateIn, body), "body": body}
    slot = streaming.StreamSlot.take()
    slot.release()
    run, registration = streaming.run_start_streamed(run_input, slot, cancel_on_disconnect=True)
    assert registration is not None
    wait_until(lambda: not ThreadStream.objects.filter(pk=registration).exists(), timeout=5)
    wait_until(
        lambda: not Run.objects.filter(pk=run.pk, status=Run.Status.PENDING).exists(), timeout=5
    )


def test_starting_runs_takes_no_savepoint(monkeypatch):
    """A savepoint is two round trips (SAVEPOINT, RELEASE): the services that
    start a run nest their transactions without them (no caller goes on in
    a transaction after they failed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cronsvc.http.inputs import validated
    from runs.apis import RunCreateIn
    from runs.services import run_start
    from threads.services import thread_create

    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)  # no worker
    body = {"assistant_id": "agent", "input": {}}
    data = validated(RunCreateIn, body)
    thread = make_thread()
    with CaptureQueriesContext(connection) as queries:
        slot = streaming.StreamSlot.take()
        streaming.run_start_streamed(
            {"thread_id": None, "data": data, "body": body, "stream": True}, slot, False
        )
        run_start(thread_id=str(thread.thread_id), data=data, body=body)
        thread_create()
    slot.release()
    assert [q["sql"] for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()] == []


def test_streams_that_end_together_ask_their_threads_deletion_in_one_message(monkeypatch):
    # 500 streams of a burst end within a second: one message, not 500.
    from runs import wakeups

    sent: list[tuple] = []
    monkeypatch.setattr(wakeups, "_send", lambda name, args=(), **options: sent.append(args))
    runs = [stateless_run() for _ in range(3)]
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(status=Run.Status.SUCCESS)
    for run in runs:
        slot = streaming.StreamSlot.take()
        streaming.hold_stateless_thread(run, slot)
        slot.release()
    wait_until(lambda: sum(holds(run) for run in runs) == 0, timeout=5)
    wait_until(lambda: sent, timeout=5)  # by the batch's timer, DELETION_BATCH_WINDOW on
    assert [sorted(args) for args in sent] == [sorted(str(run.thread_id) for run in runs)]
