"""`crons.count` and a search's `X-Pagination-Total` without filters come from
the counters crons_cron's triggers keep on PostgreSQL (cronsvc.metrics), not
a COUNT(*): they must stay exact through every way a cron is written —
create, import (COPY), enable/disable, delete, cascades, a rollback."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from crons.models import Cron
from crons.selectors import cron_count, cron_search
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
        assert cron_count() == 1
    assert [q["sql"] for q in queries if "crons_cron" in q["sql"]] == []
    # With a filter it counts the rows.
    with CaptureQueriesContext(connection) as queries:
        assert cron_count(metadata={"k": 1}) == 0
    assert any("COUNT(" in q["sql"] and "crons_cron" in q["sql"] for q in queries)


def test_filtered_search_counts_in_its_page_statement(client, settings):
    """A filtered search (a metadata filter, or custom auth's) reads its page
    and its total in one statement (cronsvc.http.pagination.counted_page):
    the same rows, order, total and next offset as the page and a COUNT, for
    every sort (ties and nulls included) and offset (past the end too), and
    a null-owner cron stays invisible to the owner's filter."""
    from crons.selectors import SORTABLE
    from cronsvc import custom_auth
    from cronsvc.http.pagination import page
    from tests.auth_recipes import owner_auth

    thread = Thread.objects.create(metadata={"owner": "ada"})
    assistant = assistant_get_or_404("agent")
    # Made in one statement: equal created_at, so cron_id breaks the ties.
    crons_bulk_create(
        assistant=assistant,
        specs=[
            {
                "schedule": f"{i} * * * *",
                "metadata": {"owner": "ada" if i % 3 else "bob", "i": i},
                "enabled": i % 4 != 0,
            }
            for i in range(14)
        ]
        + [{"schedule": "0 0 * * *", "metadata": {}}],  # no owner
    )
    Cron.objects.filter(metadata__i__in=[1, 2]).update(end_time=None, thread=thread)
    Cron.objects.filter(metadata__i__in=[5, 7]).update(next_run_date=None)

    def search(body, token=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                "/runs/crons/search", body, content_type="application/json", **headers
            )
        assert response.status_code == 200, response.content
        crons = [q for q in queries if "crons_cron" in q["sql"]]
        return response, crons

    def expected(body, **filters):
        qs = cron_search(sort_by=body.get("sort_by"), sort_order=body.get("sort_order"), **filters)
        ids = [str(c.pk) for c in page(qs, body["offset"], body["limit"])]
        return ids, qs.count()

    for sort_by in sorted(SORTABLE):
        for sort_order in ("asc", "desc"):
            for offset in (0, 3, 8, 9, 30):
                body = {"limit": 4, "offset": offset, "sort_by": sort_by, "sort_order": sort_order}
                body["metadata"] = {"owner": "ada"}
                response, queries = search(body)
                ids, total = expected(body, metadata={"owner": "ada"})
                assert [c["cron_id"] for c in response.json()] == ids, body
                assert response["X-Pagination-Total"] == str(total) == "9", body
                assert response.get("X-Pagination-Next") == (
                    str(offset + 4) if offset + 4 < total else None
                )
                # One statement, but for an empty page past the end (counted apart).
                assert len(queries) == (1 if ids else 2), [q["sql"] for q in queries]

    # With select, only the selected fields (and only their columns are read).
    response, queries = search(
        {"limit": 2, "offset": 1, "metadata": {"owner": "ada"}, "select": ["schedule"]}
    )
    assert [list(c) for c in response.json()] == [["schedule"], ["schedule"]]
    assert response["X-Pagination-Total"] == "9" and len(queries) == 1
    assert '"payload"' not in queries[0]["sql"]
    # An empty first page is a total of 0 without a COUNT.
    response, queries = search({"limit": 5, "offset": 0, "metadata": {"owner": "nobody"}})
    assert response.json() == [] and response["X-Pagination-Total"] == "0"
    assert len(queries) == 1

    settings.CRONSVC_AUTH = owner_auth()
    body = {"limit": 3, "offset": 2, "enabled": True}
    response, queries = search(body, token="token-ada")
    with custom_auth.acting_as(custom_auth.AuthUser("ada")):
        ids, total = expected(body, enabled=True)
    assert [c["cron_id"] for c in response.json()] == ids
    assert response["X-Pagination-Total"] == str(total) == "7"
    assert len(queries) == 1
    # The owner-less cron is in no owner's search.
    response, _ = search({"limit": 100, "offset": 0}, token="token-ada")
    assert all(c["metadata"].get("owner") == "ada" for c in response.json())
    assert response["X-Pagination-Total"] == "9"
