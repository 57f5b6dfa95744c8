"""cron_out writes what CronOut (the documented wire serializer) writes, and
with `select` reads only the columns it needs."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crons.models import Cron
from crons.services import cron_create
from crons.wire import CRON_FIELDS, CronOut, cron_columns, cron_out
from cronsvc.selectors import assistant_get_or_404
from threads.services import thread_create

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def crons() -> list[Cron]:
    agent = assistant_get_or_404("agent")
    plain = cron_create(assistant=agent, schedule="0 * * * *", now=START)
    rich = cron_create(
        assistant=agent,
        thread=thread_create(),
        schedule="*/5 9-17 * * 1-5",
        timezone="Europe/Paris",
        payload={"input": {"x": [1, "two"]}},
        metadata={"k": "v"},
        end_time=START + dt.timedelta(days=30),
        enabled=False,
        user_id="someone",
        now=START,
    )
    controlled = cron_create(
        assistant=agent,
        schedule="15 * * * *",
        overlap_policy="buffer_all",
        start_time=START + dt.timedelta(days=2),
        max_runs=7,
        now=START,
    )
    Cron.objects.filter(pk=controlled.pk).update(remaining_runs=0, paused_reason="why")
    advancing = cron_create(assistant=agent, schedule="30 * * * *", now=START)
    Cron.objects.filter(pk=advancing.pk).update(
        next_run_date=None, needs_advance=True, last_tick_at=START
    )
    return [Cron.objects.get(pk=c.pk) for c in (plain, rich, controlled, advancing)]


def test_cron_out_is_cron_serializer_output():
    for cron in crons():
        assert cron_out(cron) == CronOut(cron).data
        assert list(cron_out(cron)) == CRON_FIELDS
        select = ["next_run_date", "cron_id", "metadata"]
        assert cron_out(cron, select) == CronOut(cron, context={"select": select}).data


@pytest.mark.parametrize(
    "select",
    [["cron_id"], ["next_run_date"], ["payload", "enabled"], ["overlap_policy"], CRON_FIELDS],
)
def test_selected_fields_read_no_other_column(select):
    pks = [c.pk for c in crons()]
    rows = list(Cron.objects.filter(pk__in=pks).only(*cron_columns(select)))
    with CaptureQueriesContext(connection) as queries:
        out = [cron_out(row, select) for row in rows]
    assert not queries.captured_queries  # no deferred column loaded on access
    assert [list(item) for item in out] == [select] * len(rows)
