"""cronsvc.statements: a keyed read compiled once gives what the ORM gives,
every time, on the database the tests run on; a custom-auth user's reads are
never keyed (their filter is part of the SQL)."""

from datetime import UTC, datetime

import pytest

from crons.models import Cron
from crons.selectors import cron_search
from crons.services import crons_bulk_create
from crons.wire import cron_columns, cron_out
from cronsvc import custom_auth, statements
from cronsvc.http.pagination import page
from cronsvc.selectors import assistant_get_or_404

pytestmark = pytest.mark.django_db


@pytest.fixture
def crons(db):
    assistant = assistant_get_or_404("agent")
    crons_bulk_create(
        assistant=assistant,
        specs=[
            {"schedule": "0 0 1 1 *", "metadata": {"n": n, "odd": bool(n % 2)}} for n in range(30)
        ],
    )
    Cron.objects.filter(metadata__n=7).update(
        payload={"input": {"x": [1, None]}}, end_time=datetime(2031, 1, 1, 0, 0, 0, 500, UTC)
    )


@pytest.mark.parametrize("select", [None, ["cron_id", "next_run_date", "metadata", "end_time"]])
@pytest.mark.parametrize("offset", [0, 3, 25, 40])
@pytest.mark.parametrize("sort_by", [None, "next_run_date", "end_time"])
def test_keyed_page_and_count_are_the_orms(crons, select, offset, sort_by):
    def build():
        return cron_search(sort_by=sort_by, sort_order="asc").only(*cron_columns(select))

    expected = [cron_out(cron, select) for cron in page(build(), offset, 10)]
    key = statements.key_of("test", {"select": select, "offset": offset, "sort_by": sort_by})
    for _ in range(2):  # compiled, then from the cache
        rows = statements.rows(key, lambda: page(build(), offset, 10))
        assert [cron_out(cron, select) for cron in rows] == expected
        assert statements.count(key, build) == build().count() == 30
        total = ("SELECT COUNT(*) FROM crons_cron WHERE enabled = %s", [True])
        rows, value = statements.rows_and_scalar(key, lambda: page(build(), offset, 10), total)
        assert [cron_out(cron, select) for cron in rows] == expected
        assert value == 30


def test_keyed_filters_and_empty_results(crons):
    key = statements.key_of("test", {"odd": True})
    assert statements.count(key, lambda: cron_search(metadata={"odd": True})) == 15
    assert statements.rows("test-none", lambda: Cron.objects.none()) == []
    assert statements.count("test-none", lambda: Cron.objects.none()) == 0
    one = ("SELECT %s", [7])
    assert statements.rows_and_scalar("test-none", lambda: Cron.objects.none(), one) == ([], 7)
    assert statements.rows_and_scalar(None, lambda: Cron.objects.none(), one) == ([], 7)


def test_a_custom_auth_users_reads_are_not_keyed():
    token = custom_auth.set_current_user(custom_auth.AuthUser("alice"))
    try:
        assert statements.key_of("test", {}) is None
    finally:
        custom_auth.reset_current_user(token)
    assert statements.key_of("test", {}) is not None
