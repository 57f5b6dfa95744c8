"""`after_seconds`: a run that no worker claims before its delay has passed, woken
at its time (or, past an hour, by the reconciler). No worker here: claims are
made by hand; the worker's side is in tests/e2e/test_runs_worker.py."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from langgraph_sdk.errors import UnprocessableEntityError

from runs import lifecycle, wakeups
from runs.leases import runs_reconcile
from runs.models import Run
from threads.models import Thread

pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)


@pytest.fixture
def published(monkeypatch):
    """The wake-ups published: (thread ids, countdown or None)."""
    sent: list[tuple[tuple, float | None]] = []
    monkeypatch.setattr(
        wakeups,
        "_send",
        lambda name, args=(), **options: sent.append((args, options.get("countdown"))),
    )
    return sent


def test_a_run_waits_out_its_delay_and_the_threads_later_runs_wait_behind_it(sdk, published):
    thread = sdk.threads.create()["thread_id"]
    before = timezone.now()

    run = sdk.runs.create(thread, "agent", input={}, after_seconds=30)
    later = sdk.runs.create(thread, "agent", input={})

    assert run["status"] == "pending"
    row = Run.objects.get(pk=run["run_id"])
    assert timedelta(seconds=29) <= row.not_before - before <= timedelta(seconds=40)
    assert Run.objects.get(pk=later["run_id"]).not_before is None
    assert ((thread,), 30.0) in published  # woken at its time
    assert lifecycle.run_claim_ready() is None  # not yet, and the later run keeps its turn

    Run.objects.filter(pk=row.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    assert lifecycle.run_claim_ready().run_id == uuid.UUID(run["run_id"])


def test_past_an_hour_the_reconciler_wakes_it(sdk, published):
    run = sdk.runs.create(None, "agent", input={}, after_seconds=7200)

    assert [countdown for _, countdown in published] == [None]  # no two-hour countdown
    assert runs_reconcile(after=60)["stalled"] == 0
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Run.objects.filter(pk=run["run_id"]).update(not_before=an_hour_ago, updated_at=an_hour_ago)
    assert runs_reconcile(after=60)["stalled"] == 1


def test_no_delay_or_a_negative_one_starts_at_once(sdk, published):
    thread = sdk.threads.create()["thread_id"]
    for after in (0, -5, None):
        run = sdk.runs.create(thread, "agent", input={}, after_seconds=after)
        assert Run.objects.get(pk=run["run_id"]).not_before is None
    assert all(countdown is None for _, countdown in published)


def test_a_delay_past_ten_years_is_422_and_writes_nothing(sdk):
    before = Thread.objects.count(), Run.objects.count()
    for after in (1e12, 10 * 366 * 86400 + 1):
        with pytest.raises(UnprocessableEntityError) as exc:
            sdk.runs.create(None, "agent", input={}, after_seconds=after)
        assert "after_seconds" in exc.value.message
    assert (Thread.objects.count(), Run.objects.count()) == before
