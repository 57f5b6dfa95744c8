"""`crons.count` and a search's `X-Pagination-Total` without filters come from
the counters crons_cron's triggers keep on PostgreSQL (cronsvc.metrics), not
a COUNT(*): they must stay exact through every way a cron is written —
create, import (COPY), enable/disable, delete, cascades, a rollback."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from crons.models import Cron
from crons.selectors import cron_search, cron_total
from crons.services import crons_bulk_create
from cronsvc.selectors import assistant_get_or_404
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)


def totals(sdk) -> tuple[int, int, int, int]:
    """(count, search total, enabled search total, disabled search total) as
    the API answers them."""

    def total(**body):
        response = sdk.http.client.post("/runs/crons/search", json={"limit": 1, **body})
        response.raise_for_status()
        return int(response.headers["X-Pagination-Total"])

    return sdk.crons.count(), total(), total(enabled=True), total(enabled=False)


def truth() -> tuple[int, int, int, int]:
    n = Cron.objects.count()
    on = Cron.objects.filter(enabled=True).count()
    return n, n, on, n - on


def test_unfiltered_totals_stay_exact_through_every_writer(sdk):
    assert connection.vendor == "postgresql"
    assert totals(sdk) == truth() == (0, 0, 0, 0)
    thread = sdk.threads.create()
    made = [sdk.crons.create("agent", schedule="0 9 * * *") for _ in range(3)]
    sdk.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 10 * * *")
    crons_bulk_create(
        assistant=assistant_get_or_404("agent"),
        specs=[{"schedule": "0 11 * * *", "enabled": i % 2 == 0} for i in range(7)],
    )
    assert totals(sdk) == truth() == (11, 11, 8, 3)
    sdk.crons.update(made[0]["cron_id"], enabled=False)
    sdk.crons.update(made[1]["cron_id"], enabled=False)
    sdk.crons.update(made[1]["cron_id"], enabled=True)
    assert totals(sdk) == truth() == (11, 11, 7, 4)
    sdk.crons.delete(made[2]["cron_id"])
    # A thread's crons go with it (Django's cascade).
    Thread.objects.get(pk=thread["thread_id"]).delete()
    assert totals(sdk) == truth() == (9, 9, 5, 4)

    # What rolls back is not counted.
    def change_then_fail():
        with transaction.atomic():
            Cron.objects.filter(pk=made[0]["cron_id"]).update(enabled=True)
            Cron.objects.filter(enabled=False).delete()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert totals(sdk) == truth() == (9, 9, 5, 4)


def test_unfiltered_totals_read_no_cron_rows(sdk):
    sdk.crons.create("agent", schedule="0 9 * * *")
    with CaptureQueriesContext(connection) as queries:
        assert cron_total(cron_search()) == 1
    assert [q["sql"] for q in queries if "crons_cron" in q["sql"]] == []
    # With a filter it counts the rows.
    with CaptureQueriesContext(connection) as queries:
        assert cron_total(cron_search(metadata={"k": 1}), metadata={"k": 1}) == 0
    assert any("COUNT(" in q["sql"] and "crons_cron" in q["sql"] for q in queries)
