"""What a stream's relay reads each time it wakes (runs.streaming._read): the
run's status and its next events in one statement, one snapshot; the run's
output only once it has finished."""

import pytest

from runs import streaming
from runs.models import Run, RunEvent
from tests.factories import agent, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


def quiet_run() -> Run:
    # A running run no worker was told about (run_create would wake one).
    return Run.objects.create(
        thread=make_thread(), assistant=agent(), status=Run.Status.RUNNING, kwargs={"input": {}}
    )


def test_a_wake_reads_the_status_and_the_next_events_in_one_statement(django_assert_num_queries):
    run = quiet_run()
    RunEvent.objects.bulk_create(
        [RunEvent(run=run, event="values", data={"i": i, "s": "é"}) for i in range(3)]
    )
    first = RunEvent.objects.filter(run=run).order_by("id").first().id
    with django_assert_num_queries(1):
        current, events = streaming._read(run.pk, first)
    assert current == {"status": Run.Status.RUNNING}
    assert [(event, data) for _, event, data in events] == [
        ("values", {"i": 1, "s": "é"}),
        ("values", {"i": 2, "s": "é"}),
    ]
    assert events[0][0] > first
    with django_assert_num_queries(1):
        assert streaming._read(run.pk, events[-1][0]) == ({"status": Run.Status.RUNNING}, [])


def test_a_finished_run_brings_its_output_and_a_gone_one_nothing(monkeypatch):
    run = quiet_run()
    RunEvent.objects.create(run=run, event="values", data=None)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.ERROR, output={"error": "E"}, error="m")
    current, events = streaming._read(run.pk, 0)
    assert current == {"status": "error", "output": {"error": "E"}, "error": "m", "streamed": False}
    assert [(event, data) for _, event, data in events] == [("values", None)]
    # A full batch is not the end yet: the relay reads on before it ends.
    monkeypatch.setattr(streaming, "BATCH", 1)
    assert streaming._read(run.pk, 0)[0] == {"status": "error"}
    Run.objects.filter(pk=run.pk).delete()
    assert streaming._read(run.pk, 0) == (None, [])
