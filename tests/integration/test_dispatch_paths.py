"""A tick becomes the same run whichever way it is fired.

The same tick of the same cron goes, each time from the same starting state
(a savepoint rolled back in between), through every path that turns a tick
into a run: the scheduler on time (the batch, on PostgreSQL its one SQL
statement, or the per-cron path for crons a batch cannot take), the scheduler
90 s late (per cron), the batch's ORM writer called directly, and run-now.
Runs, ticks and threads must match field for field — ids, timestamps and the
tick's reason aside.
"""

import datetime as dt

import pytest
from django.db import transaction

from crons import dispatch, ticking
from crons.models import Cron, Tick
from crons.services import cron_create
from cronsvc.selectors import assistant_get_or_404
from runs.models import Run
from threads.models import Thread
from threads.services import thread_create

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, 0, 0, 30, tzinfo=dt.UTC)
INSTANT = dt.datetime(2026, 5, 1, 1, 0, tzinfo=dt.UTC)  # "0 * * * *" after START
PAYLOAD = {
    "input": {"messages": [{"role": "user", "content": "What time is it?"}]},
    "config": {"tags": ["nightly"], "configurable": {"model": "small"}},
    "metadata": {"team": "ops"},
    "interrupt_before": ["tools"],
    "webhook": "https://example.com/hook",
}

# What may differ between two firings of the same tick.
RUN_IGNORED = {"run_id", "thread_id", "created_at", "updated_at"}
TICK_IGNORED = {"id", "run_id", "created_at", "reason"}
THREAD_IGNORED = {"thread_id", "created_at", "updated_at"}


def _fields(obj, ignored: set) -> dict:
    return {
        f.attname: getattr(obj, f.attname)
        for f in type(obj)._meta.concrete_fields
        if f.attname not in ignored
    }


def _fresh(cron: Cron) -> Cron:
    return Cron.objects.select_related("assistant", "thread").get(pk=cron.pk)


def fire_on_time(cron):
    ticking.fire_due(now=INSTANT)


def fire_late(cron):
    ticking.fire_due(now=INSTANT + dt.timedelta(seconds=90))


def fire_batch_sql(cron):
    dispatch.fire_batch_postgres([dispatch.run_spec(cron, cron.next_run_date)])


def fire_batch_orm(cron):
    dispatch.fire_batch_orm([dispatch.run_spec(cron, cron.next_run_date)])


def fire_run_now(cron):
    dispatch.cron_run_now(cron=cron, now=INSTANT)


class _Rollback(Exception):
    pass


def fired(cron: Cron, path) -> dict:
    """What firing `cron`'s tick at INSTANT through `path` writes (then undone)."""
    result = {}
    try:
        with transaction.atomic():
            path(_fresh(cron))
            (run,) = Run.objects.filter(cron=cron)
            (tick,) = Tick.objects.filter(cron=cron)
            result = {
                "run": _fields(run, RUN_IGNORED),
                "tick": _fields(tick, TICK_IGNORED),
                "thread": _fields(Thread.objects.get(pk=run.thread_id), THREAD_IGNORED),
                "tick_points_at_run": tick.run_id == run.run_id,
                "thread_is_the_crons": run.thread_id == cron.thread_id,
            }
            raise _Rollback
    except _Rollback:
        pass
    return result


@pytest.mark.parametrize("strategy", [None, "enqueue", "reject", "interrupt"])
@pytest.mark.parametrize("kind", ["stateless", "thread"])
def test_every_path_fires_the_same_run(kind, strategy, settings):
    settings.CRONSVC_MISSED_TICK_GRACE = 120  # 90 s late still fires
    payload = {**PAYLOAD, **({"multitask_strategy": strategy} if strategy else {})}
    thread = thread_create(metadata={"owner": "ada"}) if kind == "thread" else None
    cron = cron_create(
        assistant=assistant_get_or_404("agent"),
        schedule="0 * * * *",
        thread=thread,
        payload=payload,
        metadata={"team": "cron's", "plan": "pro"},
        now=START,
    )
    assert cron.next_run_date == INSTANT
    paths = {"on time": fire_on_time, "late": fire_late, "run-now": fire_run_now}
    if dispatch.batchable(cron):
        paths.update({"batch (SQL)": fire_batch_sql, "batch (ORM)": fire_batch_orm})
    results = {name: fired(cron, path) for name, path in paths.items()}

    reference = results["run-now"]
    for name, result in results.items():
        assert result == reference, name
    run, tick, thread_row = reference["run"], reference["tick"], reference["thread"]
    # The payload's multitask_strategy is the one that counts, on every path.
    assert run["multitask_strategy"] == (strategy or "enqueue")
    # As on the LangGraph Server: cron_id in the run's configurable.
    expected = {k: v for k, v in PAYLOAD.items() if k != "metadata"}
    config = expected.get("config") or {}
    expected["config"] = {
        **config,
        "configurable": {**(config.get("configurable") or {}), "cron_id": str(cron.cron_id)},
    }
    assert run["kwargs"] == expected
    # The cron's metadata, then the payload's (LangGraph Server's merge).
    assert run["metadata"] == {"team": "ops", "plan": "pro", "cron_id": str(cron.cron_id)}
    assert (run["status"], run["scheduled_at"], run["cron_id"]) == ("pending", INSTANT, cron.pk)
    assert (tick["status"], tick["scheduled_at"]) == ("fired", INSTANT)
    assert reference["tick_points_at_run"]
    agent = assistant_get_or_404("agent")
    stamp = {"graph_id": agent.graph_id, "assistant_id": str(agent.assistant_id)}
    if kind == "stateless":
        assert run["on_completion"] == "delete"
        assert not reference["thread_is_the_crons"]
        assert thread_row["metadata"] == {"cron_id": str(cron.cron_id), **stamp}
    else:
        assert run["on_completion"] is None
        assert reference["thread_is_the_crons"]
        assert thread_row["metadata"] == {"owner": "ada", **stamp}
    assert (thread_row["status"], thread_row["graph_id"]) == ("busy", agent.graph_id)


@pytest.mark.parametrize("kind", ["stateless", "thread"])
def test_every_scheduled_path_fires_a_jittered_tick_the_same(kind, settings):
    """A cron with a jitter: on time, late, and both batch writers store the
    same run and tick, with the instant as scheduled_at and instant + offset
    as the run's not_before and the tick's fire_at. Run-now is not jittered."""
    settings.CRONSVC_MISSED_TICK_GRACE = 120
    thread = thread_create() if kind == "thread" else None
    cron = cron_create(
        assistant=assistant_get_or_404("agent"),
        schedule="0 * * * *",
        thread=thread,
        payload=PAYLOAD,
        jitter=1200,
        now=START,
    )
    offset = dispatch.tick_jitter(cron, INSTANT)
    paths = {
        "on time": fire_on_time,
        "late": fire_late,
        "batch (SQL)": fire_batch_sql,
        "batch (ORM)": fire_batch_orm,
    }
    results = {name: fired(cron, path) for name, path in paths.items()}
    reference = results["on time"]
    for name, result in results.items():
        assert result == reference, name
    assert (reference["run"]["scheduled_at"], reference["run"]["not_before"]) == (
        INSTANT,
        INSTANT + offset if offset else None,  # no offset (1 in 1200): none stored
    )
    assert (reference["tick"]["scheduled_at"], reference["tick"]["fire_at"]) == (
        INSTANT,
        INSTANT + offset,
    )
    now = fired(cron, fire_run_now)
    assert (now["run"]["not_before"], now["tick"]["fire_at"]) == (None, INSTANT)
