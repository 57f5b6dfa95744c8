"""An import (crons_bulk_create) through PostgreSQL COPY writes the same crons
and django-celery-beat mirrors as the ORM path, text escapes included."""

import datetime as dt
import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django_celery_beat.models import CrontabSchedule

from crons import services
from crons.models import Cron
from cronsvc.errors import Invalid
from cronsvc.metrics import crons_total
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_get_or_404
from threads.models import Thread
from threads.services import thread_create

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
CRON_COLUMNS = [
    "assistant_id",
    "thread_id",
    "schedule",
    "timezone",
    "payload",
    "metadata",
    "end_time",
    "enabled",
    "on_run_completed",
    "user_id",
    "next_run_date",
    "last_tick_at",
    "needs_advance",
]


def specs(thread):
    awkward = {"text": 'tab\there, line\nbreak, back\\slash, quote " and ünïcode', "n": [1, 2.5]}
    return [
        {"schedule": "0 * * * *"},
        {"schedule": "*/5 9-17 * * 1-5", "timezone": "Europe/Paris", "metadata": awkward},
        {"schedule": "0 0 L * *", "payload": {"input": awkward}},  # not Celery's: a clocked mirror
        {"schedule": "0 0 1 1 *", "end_time": START + dt.timedelta(days=3)},  # never fires again
        {"schedule": "30 6 * * *", "enabled": False, "on_run_completed": "keep"},
        {"schedule": "15 * * * *", "thread": thread},
    ]


def imported(ids) -> list[tuple]:
    """Each imported cron's columns and its mirror's, ids aside, in spec order."""
    rows = []
    crons = Cron.objects.filter(pk__in=ids).select_related(
        "periodic_task__crontab", "periodic_task__clocked"
    )
    for cron in sorted(crons, key=lambda c: c.schedule):
        task = cron.periodic_task
        crontab = task.crontab
        rows.append(
            (
                *(getattr(cron, c) for c in CRON_COLUMNS),
                task.name == f"cron {cron.cron_id}",
                task.kwargs == f'{{"cron_id": "{cron.cron_id}"}}',
                task.description.replace(str(cron.cron_id), "<id>"),
                (task.task, task.args, task.headers, task.enabled, task.one_off, task.expires),
                (task.total_run_count, task.queue, task.priority, task.interval_id, task.solar_id),
                crontab
                and (crontab.minute, crontab.hour, crontab.day_of_month, crontab.day_of_week),
                crontab and str(crontab.timezone),
                task.clocked and task.clocked.clocked_time,
            )
        )
    return rows


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_copy_writes_what_the_orm_path_writes(monkeypatch):
    agent = assistant_get_or_404("agent")
    thread = thread_create()
    assert services.copy_supported()
    before = set(Cron.objects.values_list("pk", flat=True))
    assert services.crons_bulk_create(assistant=agent, specs=specs(thread), now=START) == 6
    copied = set(Cron.objects.values_list("pk", flat=True)) - before
    monkeypatch.setattr(services, "copy_supported", lambda: False)
    services.crons_bulk_create(assistant=agent, specs=specs(thread), now=START)
    created = set(Cron.objects.values_list("pk", flat=True)) - before - copied
    assert len(copied) == len(created) == 6
    assert imported(copied) == imported(created)
    # One crontab row per expression, shared by both imports (the L one is clocked).
    shared = CrontabSchedule.objects.filter(periodictask__cron__in=copied | created).distinct()
    assert shared.count() == 5
    # The sequences moved past the ids COPY took: ordinary creates still work.
    services.cron_create(assistant=agent, schedule="0 0 L * *", now=START)
    services.cron_create(assistant=agent, schedule="0 * * * *", now=START)


def test_one_invalid_spec_imports_nothing():
    agent = assistant_get_or_404("agent")
    count = Cron.objects.count()
    with pytest.raises(Invalid, match="cron #1"):
        services.crons_bulk_create(
            assistant=agent, specs=[{"schedule": "0 * * * *"}, {"schedule": "61 * * * *"}]
        )
    assert Cron.objects.count() == count


def _role(cursor) -> str:
    cursor.execute("SHOW session_replication_role")
    return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_copy_without_row_triggers_restores_them_and_checks_references():
    """As a superuser the import copies with session_replication_role =
    replica (no per-row foreign-key events), checks the references itself,
    and puts the role back for the rest of the transaction."""
    from cronsvc.pg_copy import replica_copy_allowed

    agent = assistant_get_or_404("agent")
    thread = thread_create()
    with connection.cursor() as cursor:
        assert replica_copy_allowed(
            cursor.cursor, services._COPIED_TABLES, services._COUNTER_TRIGGERS
        )
        services.crons_bulk_create(assistant=agent, specs=specs(thread), now=START)
        assert _role(cursor) == "origin"
        # The foreign keys still hold for what others write in the transaction.
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(
                "SET CONSTRAINTS ALL IMMEDIATE; UPDATE crons_cron SET assistant_id = %s "
                "WHERE cron_id = (SELECT cron_id FROM crons_cron LIMIT 1)",
                [str(uuid.uuid4())],
            )
    # A reference gone before the import: IntegrityError, nothing written.
    gone = thread_create()
    count = Cron.objects.count()
    Thread.objects.filter(pk=gone.pk).delete()
    with pytest.raises(IntegrityError, match="thread"):
        services.crons_bulk_create(
            assistant=agent, specs=[{"schedule": "0 * * * *", "thread": gone}], now=START
        )
    stale = Assistant(assistant_id=uuid.uuid4(), graph_id="agent")
    with pytest.raises(IntegrityError, match="assistant"):
        services.crons_bulk_create(assistant=stale, specs=[{"schedule": "0 * * * *"}], now=START)
    assert Cron.objects.count() == count
    with connection.cursor() as cursor:
        assert _role(cursor) == "origin"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_an_unknown_trigger_keeps_the_row_triggers_on():
    """A trigger the import does not know of (an operator's audit trigger,
    say) must fire: the import then copies with every trigger on."""
    from cronsvc.pg_copy import replica_copy_allowed

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION audit_noop() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$ "
            "LANGUAGE plpgsql; CREATE TRIGGER audit AFTER INSERT ON "
            "django_celery_beat_periodictask FOR EACH STATEMENT EXECUTE FUNCTION audit_noop()"
        )
        assert not replica_copy_allowed(
            cursor.cursor, services._COPIED_TABLES, services._COUNTER_TRIGGERS
        )
        agent = assistant_get_or_404("agent")
        before = crons_total()
        specs = [{"schedule": "0 * * * *"}, {"schedule": "0 * * * *", "enabled": False}]
        assert services.crons_bulk_create(assistant=agent, specs=specs) == 2
        # Counted once, by the trigger (no upsert of the import's own on top).
        assert crons_total() == before + 2 == Cron.objects.count()
        assert crons_total(enabled=False) == Cron.objects.filter(enabled=False).count()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_a_crontab_gone_before_the_copy_fails_the_import(monkeypatch):
    """With the triggers off, the crontab rows the mirrors reference are
    locked and checked in one statement."""
    from crons import mirror

    agent = assistant_get_or_404("agent")
    count = Cron.objects.count()
    monkeypatch.setattr(mirror, "crontab_ids", lambda keys: dict.fromkeys(set(keys), 987654321))
    with pytest.raises(IntegrityError, match="crontab"):
        services.crons_bulk_create(assistant=agent, specs=[{"schedule": "0 * * * *"}], now=START)
    assert Cron.objects.count() == count


def test_the_scheduler_fires_imported_crons():
    """Imported crons are the scheduler's like any other: due at their first
    instant, fired once each (the disabled one not), then advanced."""
    from crons import ticking
    from crons.models import Tick

    agent = assistant_get_or_404("agent")
    thread = thread_create()
    batch = [
        {"schedule": "0 * * * *"},
        {"schedule": "0 * * * *", "thread": thread},
        {"schedule": "0 * * * *", "enabled": False},
        {"schedule": "30 * * * *", "timezone": "Asia/Kolkata"},  # :00 UTC as well
    ]
    assert services.crons_bulk_create(assistant=agent, specs=batch, now=START) == 4
    imported = Cron.objects.filter(schedule__in=["0 * * * *", "30 * * * *"])
    instant = START + dt.timedelta(hours=1)
    assert {c.next_run_date for c in imported} == {instant}
    ticking.fire_due(now=instant)
    ticking.advance()
    fired = Tick.objects.filter(cron__in=imported, status=Tick.Status.FIRED)
    assert sorted(t.cron.enabled for t in fired) == [True, True, True]
    assert {c.next_run_date for c in imported.filter(enabled=True)} == {
        instant + dt.timedelta(hours=1)
    }
