"""cronsvc.statements: a keyed read compiled once gives what the ORM gives,
every time, on the database the tests run on; a custom-auth user's reads are
never keyed (their filter is part of the SQL)."""

import uuid
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


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_first_by_ids_is_the_orms_first_each_time(crons):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runs.models import Run
    from runs.selectors import run_get_or_404
    from threads.models import Thread
    from threads.services import thread_create

    threads = [thread_create(metadata={"n": n, "deep": {"x": [n, None]}}) for n in range(3)]
    assistant = assistant_get_or_404("agent")
    runs = [
        Run.objects.create(
            thread=thread, assistant=assistant, status="running", kwargs={"input": {"n": 1}}
        )
        for thread in threads
    ]

    def by_thread(pk, thread_pk):
        return Run.objects.filter(pk=pk, thread=thread_pk)

    for _ in range(2):  # compiled, then from the cache, with other ids each time
        for run, thread in zip(runs, threads, strict=True):
            found = statements.first("test-run", by_thread, run.pk, thread.pk)
            expected = Run.objects.filter(pk=run.pk, thread=thread.pk).first()
            assert isinstance(found, Run) and not found._state.adding
            assert _fields(found) == _fields(expected)
            assert _fields(run_get_or_404(thread=thread, run_id=str(run.pk))) == _fields(expected)
            found = statements.first(
                "test-thread", lambda pk: Thread.objects.filter(pk=pk), thread.pk
            )
            assert _fields(found) == _fields(Thread.objects.get(pk=thread.pk))
        # A run of another thread, an unknown id: nothing.
        assert statements.first("test-run", by_thread, runs[0].pk, threads[1].pk) is None
        assert statements.first("test-run", by_thread, uuid.uuid4(), threads[0].pk) is None
    with CaptureQueriesContext(connection) as queries:
        statements.first("test-run", by_thread, runs[2].pk, threads[2].pk)
    assert len(queries) == 1 and str(runs[2].pk.hex) in queries[0]["sql"].replace("-", "")


def test_first_of_a_custom_auth_user_goes_through_the_orm(crons, monkeypatch):
    from threads.models import Thread
    from threads.services import thread_create

    thread = thread_create(metadata={})
    built = []

    def build(pk):
        built.append(pk)
        return Thread.objects.filter(pk=pk)

    statements.first("test-auth", build, thread.pk)
    statements.first("test-auth", build, thread.pk)
    assert len(built) == 1  # compiled once, with a stand-in id
    token = custom_auth.set_current_user(custom_auth.AuthUser("alice"))
    try:
        assert statements.first("test-auth", build, thread.pk).pk == thread.pk
    finally:
        custom_auth.reset_current_user(token)
    assert built[1:] == [thread.pk]  # the user's own query, built for it


@pytest.mark.django_db(transaction=True)
def test_a_locking_lookup_by_id_locks_and_needs_a_transaction():
    from django.db import connection, transaction
    from django.db.transaction import TransactionManagementError
    from django.test.utils import CaptureQueriesContext

    from runs import locks
    from threads.models import Thread
    from threads.services import thread_create

    thread = thread_create(metadata={"n": 1})
    with pytest.raises(TransactionManagementError):  # as the ORM's select_for_update
        locks.lock_thread_row(thread.pk)
    for _ in range(2):
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            locked = locks.lock_existing_thread(str(thread.pk))
        assert _fields(locked) == _fields(Thread.objects.get(pk=thread.pk))
        if connection.vendor == "postgresql":
            assert "FOR UPDATE" in queries[-1]["sql"]
    with transaction.atomic(), pytest.raises(Thread.DoesNotExist):
        locks.lock_existing_thread(uuid.uuid4())
