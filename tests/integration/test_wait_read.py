"""What a wait (runs.join, runs.wait) reads each time it wakes
(runs.waiters._current): the run's status alone while it has not changed
(a wake for one of its events), the whole row once it has."""

import pytest

from runs import waiters
from runs.models import Run
from tests.factories import agent, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_wake_reads_the_whole_run_only_when_its_status_changed(django_assert_num_queries):
    run = Run.objects.create(
        thread=make_thread(), assistant=agent(), status=Run.Status.RUNNING, kwargs={"input": {}}
    )
    with django_assert_num_queries(1):
        assert waiters._current(run.pk, Run.Status.RUNNING) == Run.Status.RUNNING
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCESS, output={"a": 1})
    with django_assert_num_queries(2):
        found = waiters._current(run.pk, Run.Status.RUNNING)
    assert isinstance(found, Run) and found.output == {"a": 1}
    assert waiters._current(run.pk, "").status == Run.Status.SUCCESS  # "": always the row
    Run.objects.filter(pk=run.pk).delete()
    assert waiters._current(run.pk, Run.Status.RUNNING) is None
