"""Defaults a cron gets are decided when it is written, and stored; the batch
predicate and its query form agree."""

import datetime as dt
import importlib

import pytest
from django.apps import apps

from crons import dispatch
from crons.models import Cron
from crons.services import cron_create, cron_update, crons_bulk_create
from cronsvc.selectors import assistant_get_or_404
from threads.services import thread_create

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def make(**kwargs) -> Cron:
    return cron_create(
        assistant=assistant_get_or_404("agent"), schedule="0 * * * *", now=START, **kwargs
    )


def test_stateless_on_run_completed_is_stored_when_created():
    assert make().on_run_completed == "delete"
    assert make(on_run_completed="keep").on_run_completed == "keep"
    # On a thread, the thread is the cron's: nothing to delete or keep.
    assert make(thread=thread_create(), on_run_completed="keep").on_run_completed is None
    crons_bulk_create(
        assistant=assistant_get_or_404("agent"),
        specs=[{"schedule": "0 * * * *", "metadata": {"bulk": True}}],
        now=START,
    )
    assert Cron.objects.get(metadata__bulk=True).on_run_completed == "delete"


def test_update_leaves_it_or_sets_the_default():
    cron = make(on_run_completed="keep")
    assert cron_update(cron=cron, schedule="5 * * * *").on_run_completed == "keep"
    assert cron_update(cron=cron, on_run_completed="").on_run_completed == "delete"
    on_thread = make(thread=thread_create())
    assert cron_update(cron=on_thread, on_run_completed="keep").on_run_completed is None


def test_migration_stores_the_default_on_stateless_rows_without_one():
    migration = importlib.import_module("crons.migrations.0004_stateless_on_run_completed")
    stateless, kept, on_thread = make(), make(on_run_completed="keep"), make(thread=thread_create())
    Cron.objects.filter(pk=stateless.pk).update(on_run_completed=None)
    migration.store_default(apps, None)
    stored = dict(Cron.objects.values_list("pk", "on_run_completed"))
    assert stored == {stateless.pk: "delete", kept.pk: "keep", on_thread.pk: None}


def test_batchable_and_its_query_agree():
    crons = [
        make(thread=thread, payload=payload)
        for thread in (None, thread_create(), thread_create())
        for payload in (
            {},
            {"multitask_strategy": "enqueue"},
            {"multitask_strategy": "reject"},
            {"multitask_strategy": "interrupt"},
            {"multitask_strategy": "rollback"},
        )
    ]
    by_query = set(Cron.objects.filter(dispatch.BATCHABLE).values_list("pk", flat=True))
    assert by_query == {c.pk for c in crons if dispatch.batchable(c)}
    assert len(by_query) == 5 + 2 * 2
