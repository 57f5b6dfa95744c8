"""Executor edges: time limits between graph steps, and cascades that keep
django-celery-beat mirrors in step."""

import pytest
from django_celery_beat.models import PeriodicTask

from crons.services import cron_create
from cronsvc.selectors import assistant_get_or_404
from cronsvc.services import assistant_create, assistant_delete
from runs import tasks
from runs.models import Run
from runs.services import run_create
from threads.services import thread_create, thread_delete

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_over_its_time_limit_ends_as_timeout(settings, monkeypatch):
    monkeypatch.setenv("SLOW_GRAPH_SECONDS", "0.3")
    settings.CRONSVC_RUN_TIMEOUT = 0.1
    thread = thread_create()
    run = run_create(
        thread=thread, assistant=assistant_get_or_404("slow"), kwargs={"input": {"messages": []}}
    )
    assert tasks.drain(str(thread.thread_id)) == 1
    run.refresh_from_db()
    assert run.status == "timeout"
    assert run.error == "Run exceeded CRONSVC_RUN_TIMEOUT (0.1 s)"
    thread.refresh_from_db()
    assert thread.status == "idle"


def test_deleting_a_thread_or_assistant_removes_its_crons_mirrors():
    thread = thread_create()
    agent = assistant_get_or_404("agent")
    cron_create(assistant=agent, thread=thread, schedule="0 * * * *")
    other = assistant_create(graph_id="agent", name="other")
    cron_create(assistant=other, schedule="0 * * * *")
    kept = cron_create(assistant=agent, schedule="5 * * * *")
    assert PeriodicTask.objects.count() == 3
    thread_delete(thread=thread)
    assistant_delete(assistant=other)
    assert list(PeriodicTask.objects.values_list("pk", flat=True)) == [kept.periodic_task_id]
    assert Run.objects.count() == 0
