"""What a cron leaves behind: nothing prepared for instants that have not come
once it is disabled, and one clocked mirror row, updated in place."""

import datetime as dt

import pytest
from django_celery_beat.models import ClockedSchedule

from crons import ticking
from crons.models import Tick
from crons.services import cron_create, cron_delete, cron_update
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from threads.services import thread_create

pytestmark = pytest.mark.django_db


def test_disabling_withdraws_ticks_rejected_ahead_of_time(settings):
    settings.CRONSVC_MAX_PENDING_RUNS_PER_THREAD = 1
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cron = cron_create(
        assistant=assistant_get_or_404("agent"),
        schedule="* * * * * */20",
        thread=thread_create(),
        now=start,
    )
    for _ in range(3):
        ticking.fire_due(now=start, lookahead=75)
        ticking.advance()
    ahead = Tick.objects.filter(cron=cron, scheduled_at__gt=start)
    assert ahead.filter(status=Tick.Status.REJECTED).exists()

    cron_update(cron=cron, enabled=False, now=start)

    assert not Tick.objects.filter(cron=cron, scheduled_at__gt=start).exists()
    assert not Run.objects.filter(cron=cron, scheduled_at__gt=start).exists()


def test_a_seconds_cron_keeps_one_clocked_row_updated_in_place():
    agent = assistant_get_or_404("agent")
    before = ClockedSchedule.objects.count()
    cron = cron_create(assistant=agent, schedule="* * * * * */10")
    for schedule in ("* * * * * */5", "*/2 * * * * */15", "* * * * * 7", "0 0 L * *"):
        cron = cron_update(cron=cron, schedule=schedule)
        assert ClockedSchedule.objects.count() == before + 1
    cron = cron_update(cron=cron, schedule="0 * * * *")  # a crontab mirror now
    assert ClockedSchedule.objects.count() == before
    cron = cron_update(cron=cron, schedule="* * * * * */10")
    assert ClockedSchedule.objects.count() == before + 1
    cron_delete(cron=cron)
    assert ClockedSchedule.objects.count() == before
